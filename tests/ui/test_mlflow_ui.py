"""The MLflow and Prefect UIs on a real sweep, in Debian's chromium: what a user clicking sweepnet's links sees.

Every test saves a screenshot under its tmp dir (two of them are in README's "Comparing runs").
"""

from __future__ import annotations

import re

import pytest

from app.services.procs import http_json
from tests.ui.conftest import N_CHILDREN, SWEPT, UiSweep

pytestmark = [pytest.mark.services, pytest.mark.browser]


def _close_assistant(page) -> None:
    """MLflow 3.17 opens its assistant panel beside every page; close it so the page gets the width."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def _experiment(ui_sweep: UiSweep) -> tuple[str, str]:
    """The experiment link ``sweepnet ui`` printed (the UI's port, the training view) and the experiment id."""
    url = ui_sweep.ui_links["ui-digits"]
    assert url == f"{ui_sweep.ui_base}/#/experiments/{ui_sweep.summary['experiment_id']}?workflowType=machine_learning"
    return url, ui_sweep.summary["experiment_id"]


def test_the_experiment_link_opens_on_the_runs_table(ui_sweep, page, tmp_path):
    url, exp = _experiment(ui_sweep)
    page.goto(url)
    page.get_by_text(f"{N_CHILDREN + 1} matching runs").wait_for()  # the parent and its children
    _close_assistant(page)
    page.screenshot(path=tmp_path / "experiment.png")
    assert page.get_by_role("heading", name="Runs").is_visible()
    assert page.get_by_role("columnheader", name="Run Name").first.is_visible()
    parent_row = page.locator(f"a[href='#/experiments/{exp}/runs/{ui_sweep.summary['parent_run_id']}']")
    assert parent_row.inner_text() == "ui-digits"  # the sweep's parent, its children folded under it
    assert "workflowType=machine_learning" in page.url and "/runs" in page.url
    assert page.get_by_text("Overview", exact=True).count() == 0  # not the GenAI overview of traces


def _add_column(page, name: str) -> None:
    """Tick ``name`` in the runs table's column selector (an antd tree: search, then the node's checkbox)."""
    page.get_by_placeholder("Search columns").fill(name)
    node = page.get_by_test_id("column-selector-tree").locator(".du-bois-light-tree-treenode").filter(
        has_text=re.compile(f"^{re.escape(name)}$"))
    node.locator(".du-bois-light-tree-checkbox").click()
    node.locator(".du-bois-light-tree-checkbox-checked").wait_for()


def test_the_parent_shows_its_children_with_swept_params_and_the_objective_as_columns(ui_sweep, page, tmp_path):
    url, _ = _experiment(ui_sweep)
    page.goto(url)
    page.get_by_text(f"{N_CHILDREN + 1} matching runs").wait_for()
    _close_assistant(page)
    page.get_by_role("button", name="Columns").click()
    for column in ("valid_accuracy", *SWEPT):
        _add_column(page, column)
    page.keyboard.press("Escape")
    page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # the parent opens on its children
    children = page.get_by_role("link", name="ui-digits-0000")
    children.nth(N_CHILDREN - 1).wait_for()
    page.screenshot(path=tmp_path / "parent-children.png")
    assert children.count() == N_CHILDREN
    headers = page.get_by_role("columnheader").all_inner_texts()
    for column in ("valid_accuracy", *SWEPT):
        assert column in headers
    activations = page.locator("[role=gridcell][col-id*='model.activation']").all_text_contents()
    assert sorted(activations) == ["-"] + ["RectifierWithDropout"] * 2 + ["TanhWithDropout"] * 2  # parent: "-"
    objective = page.locator("[role=gridcell][col-id*='valid_accuracy']").all_text_contents()
    assert len([v for v in objective if 0.5 < float(v.rstrip(".") if v != "-" else "nan") <= 1]) == N_CHILDREN


def test_comparing_the_children_draws_parallel_coordinates_over_the_swept_axes(ui_sweep, page, tmp_path):
    url, _ = _experiment(ui_sweep)  # README's path: expand the parent, tick its children, press Compare
    page.goto(url)
    page.get_by_text(f"{N_CHILDREN + 1} matching runs").wait_for()
    _close_assistant(page)
    page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
    for child in ui_sweep.child_ids:
        page.locator(f"[role=row][row-id='{child}'] .ag-selection-checkbox input").check()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.get_by_text(f"Comparing {N_CHILDREN} Runs").wait_for()
    _close_assistant(page)
    page.locator(".parcoords .axis-title").first.wait_for()
    metrics = page.locator(".du-bois-light-select").nth(1)  # Parameters:, then Metrics:
    metrics.click()
    page.keyboard.type("valid_accuracy")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.locator(".parcoords .axis-title", has_text="valid_accuracy").wait_for()
    page.screenshot(path=tmp_path / "compare.png")
    titles = page.locator(".parcoords .axis-title").all_text_contents()
    for axis in (*SWEPT, "valid_accuracy"):
        assert axis in titles
    assert page.get_by_role("tab", name="Parallel Coordinates Plot").get_attribute("aria-selected") == "true"
    ticks = page.locator(".parcoords .tick text").all_text_contents()
    assert {"RectifierW", "TanhWithDr"} <= set(ticks)  # both activations on their axis (plotly cuts labels)
    assert page.locator(".js-plotly-plot canvas").count() > 0  # the lines are drawn with WebGL


def test_a_childs_artifacts_show_the_learning_curve_and_the_feature_picture(ui_sweep, page, tmp_path):
    _, exp = _experiment(ui_sweep)
    child = ui_sweep.child_ids[0]
    page.goto(f"{ui_sweep.ui_base}/#/experiments/{exp}/runs/{child}/artifacts/learning_curve.png"
              "?workflowType=machine_learning")
    for name in ("learning_curve.png", "features.png"):  # digits are images: the first layer's features too
        page.get_by_text(name, exact=True).first.click()  # the artifact tree
        image = page.locator(f"img[alt='{name}']").first
        image.wait_for()
        _close_assistant(page)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        page.screenshot(path=tmp_path / f"child-{name}")
        assert image.evaluate("img => img.naturalWidth") > 100


def test_the_parent_link_opens_the_parent_whose_artifacts_render_the_leaderboard_as_a_table(ui_sweep, page, tmp_path):
    printed = ui_sweep.summary["parent_url"]  # the summary's link names `sweepnet ui`'s default port
    assert printed.startswith("http://127.0.0.1:5000/#/experiments/")
    assert printed.endswith(f"/runs/{ui_sweep.summary['parent_run_id']}?workflowType=machine_learning")
    page.goto(printed.replace("http://127.0.0.1:5000", ui_sweep.ui_base))
    page.get_by_role("heading", name="ui-digits", exact=True).wait_for()
    _close_assistant(page)
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("tables", exact=True).first.click()
    page.get_by_text("leaderboard.json", exact=True).first.click()
    page.get_by_text("View as table").wait_for()
    page.locator("[role=columnheader] .table-header-text").first.wait_for()
    page.screenshot(path=tmp_path / "parent-leaderboard.png")
    headers = page.locator("[role=columnheader] .table-header-text").all_text_contents()
    assert headers[:5] == ["rank", "data_valid_fraction", "model_activation", "model_epochs", "model_l1"]
    activations = page.get_by_text(re.compile("^(Rectifier|Tanh)WithDropout$")).all_text_contents()
    assert activations == ["TanhWithDropout"] * 2 + ["RectifierWithDropout"] * 2  # best first, once (no rerun appends)


def test_the_registered_model_page_shows_the_champion_alias(ui_sweep, page, tmp_path):
    assert ui_sweep.summary["champion"] == "models:/ui-digits@champion"
    page.goto(f"{ui_sweep.ui_base}/#/models/ui-digits")
    page.get_by_text("Version 1").wait_for()
    _close_assistant(page)
    page.screenshot(path=tmp_path / "model.png")
    assert page.get_by_text("champion").count() >= 1


def test_the_prefect_flow_run_shows_the_leaderboard_artifact(ui_sweep, page, tmp_path):
    found = http_json(f"{ui_sweep.prefect_api}/artifacts/filter",
                      {"artifacts": {"key": {"any_": ["ui-digits-leaderboard"]}}, "limit": 5})
    assert found and {a["type"] for a in found} == {"table"}
    flow_run = max(found, key=lambda a: a["created"])["flow_run_id"]
    page.goto(f"{ui_sweep.prefect_ui}/runs/flow-run/{flow_run}")
    page.locator("li.p-tab#artifacts").click()  # Prefect's tabs are <li>s without a tab role
    page.get_by_text("ui-digits-leaderboard", exact=True).first.wait_for()
    page.screenshot(path=tmp_path / "prefect-flow-run.png")
    for key in ("ui-digits-census", "ui-digits-mlflow-parent"):
        assert page.get_by_text(key, exact=True).count() >= 1
    page.get_by_text("ui-digits-leaderboard", exact=True).first.click()  # the artifact's own page: the table
    page.get_by_text("TanhWithDropout").first.wait_for()
    page.screenshot(path=tmp_path / "prefect-leaderboard.png")
    assert page.get_by_text("RectifierWithDropout").count() == 2
    assert page.get_by_text(ui_sweep.summary["parent_run_id"]).count() >= 1  # the link in the description
