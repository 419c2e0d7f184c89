"""Plain-Python pipeline: configs, data, training, sweeps, tracking, CLI. Never imports prefect."""
