"""Why a sweep stops before fan-out: the exceptions the command line turns into exit code 2."""


class SweepRefused(ValueError):
    """The sweep was refused before any fan-out (bad config, bad data, wrong gradient)."""


class SweepBusy(SweepRefused):
    """Another live run of the same sweep holds its lease (see ``pipeline.sweep.lease``)."""
