"""Two roles: the operator (who opened the link with the server's secret) and visitors (everyone else)."""

from __future__ import annotations

from pathlib import Path

from app_util import OPERATOR_TOKEN, open_page, shown, texts
from streamlit.testing.v1 import AppTest
from test_app_runs import two_runs  # noqa: F401  (the fixture)
from test_app_train import SLEEPER, TINY, managers  # noqa: F401  (a private JobManager)


def test_a_visitor_sees_the_runs_but_no_rename_or_delete(two_runs):  # noqa: F811
    at = open_page("runs", operator=False)
    assert not at.exception and list(at.dataframe[0].value["run"]) == ["beta", "alpha"]
    assert not [b for b in at.button if b.key in ("rn_rename", "rn_delete")]
    assert "You are a visitor" in texts(at) and "rename or delete runs" in texts(at)


def test_the_operator_link_makes_the_operator_and_leaves_the_address_bar(two_runs):  # noqa: F811
    at = open_page("runs", operator=True)
    assert [b.key for b in at.button if b.key in ("rn_rename", "rn_delete")] == ["rn_rename", "rn_delete"]
    assert "operator" not in at.query_params and "You are a visitor" not in texts(at)


def test_a_wrong_secret_is_a_visitor(two_runs):  # noqa: F811
    at = open_page(operator=False)
    at.query_params["operator"] = OPERATOR_TOKEN + "x"
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not [b for b in at.button if b.key == "rn_delete"] and "operator" not in at.query_params


def test_only_the_operator_may_train_on_a_folder_of_the_server(runs):
    visitor = open_page("train", operator=False).selectbox(key="tr_dataset").options
    assert not any("any path" in o for o in visitor)
    assert any("upload a zip" in o for o in visitor)  # their own photos, uploaded
    operator = open_page("train", operator=True).selectbox(key="tr_dataset").options
    assert any("any path" in o for o in operator)


def test_a_typed_path_is_not_read_until_the_operator_asks(runs, tmp_path, monkeypatch):
    """Typing a path scans nothing (a path like / would walk the whole disk); the button does."""
    from cnn_core.data import folders

    scanned = []
    real = folders.scan_folder
    monkeypatch.setattr(folders, "scan_folder", lambda p, *a, **k: scanned.append(str(p)) or real(p, *a, **k))
    at = open_page("train", operator=True)
    options = at.selectbox(key="tr_dataset").options
    at.selectbox(key="tr_dataset").set_value(next(o for o in options if "folder of class" in o)).run()
    at.text_input(key="tr_folder").set_value(str(tmp_path)).run()
    assert scanned == [] and "then press Use this folder" in texts(at)
    at.button(key="tr_folder_use").click().run()
    assert scanned == [str(tmp_path)] and "no class folders" in texts(at)  # read once asked, and said why not


def pets_under_a_data_root(tmp_path, monkeypatch) -> Path:
    """A data root holding one photo folder, pets/ (cats and dogs, 5 photos each); the page's list made afresh."""
    import numpy as np
    from PIL import Image

    from pages import ui

    root = tmp_path / "class-data"
    for k, cls in enumerate(["cats", "dogs"]):
        (root / "pets" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((20, 20, 3), 60 * k + i, dtype=np.uint8)).save(root / "pets" / cls / f"{i}.png")
    monkeypatch.setenv("CNN_DATA_ROOTS", str(root))
    ui.shared_folders.clear()  # cached for a minute, process-wide
    return root / "pets"


def test_a_visitor_trains_on_a_photo_folder_picked_from_the_data_roots(runs, tmp_path, monkeypatch):
    """Visitors never type a server path: they pick from the photo folders found under the data roots."""
    pets_under_a_data_root(tmp_path, monkeypatch)
    at = open_page("train", operator=False)
    box = at.selectbox(key="tr_dataset")
    at.selectbox(key="tr_dataset").set_value("shared:…").run()
    assert at.selectbox(key="tr_shared").value.endswith("pets") and not at.error, [e.value for e in at.error]
    assert "2 classes" in at.selectbox(key="tr_shared").options[0]
    assert box is not None and not any("any path" in o for o in box.options)


def test_a_picked_folder_that_is_gone_since_the_list_was_made_is_one_line_not_a_crash(runs, tmp_path, monkeypatch):
    """The list is cached for a minute: an upload that expired meanwhile is refused in a line, the page goes on."""
    import shutil

    pets = pets_under_a_data_root(tmp_path, monkeypatch)
    at = open_page("train", operator=False)
    at.selectbox(key="tr_dataset").set_value("shared:…").run()
    shutil.rmtree(pets)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [shown(e) for e in at.error] == ["'class-data/pets' is not one of the photo folders offered here; choose "
                                            "one from the list of folders"]
    assert not [b for b in at.button if b.key == "tr_start"]


def test_the_operator_sets_the_class_limits_and_visitors_read_them(runs):
    from cnn_core.jobs import limits

    op = open_page("train", operator=True)
    assert "Class limits" not in texts(op)
    limits.save_limits({"job_minutes": 5})
    visitor = open_page("train", operator=False)
    assert "at most 5 minutes per job" in texts(visitor)


def test_the_limits_panel_saves_for_the_operator_only(two_runs):  # noqa: F811
    from cnn_core.jobs import limits

    visitor = open_page("runs", operator=False)
    assert not [n for n in visitor.number_input if n.key.startswith("rn_lim_")]
    at = open_page("runs", operator=True)
    at.number_input(key="rn_lim_sweep_runs").set_value(3).run()
    at.button(key="rn_limits").click().run()
    assert limits.load_limits().sweep_runs == 3 and "Saved" in texts(at)


def test_a_visitor_can_stop_their_own_job_but_not_someone_elses(runs, managers):  # noqa: F811
    from cnn_core.config import TrainConfig

    manager = managers(SLEEPER)
    theirs = manager.submit(TrainConfig(**TINY), name="theirs", root=runs, owner="someone-else", operator=False,
                            estimated_seconds=60)
    at = open_page("train", operator=False)
    assert not [b for b in at.button if b.key == f"tr_cancel_{theirs.id}"]
    assert "only they or the operator can stop it" in texts(at)
    mine = manager.submit(TrainConfig(**TINY), name="mine", root=runs, owner=at.session_state["_ui_visitor"],
                          operator=False, estimated_seconds=60)  # this session's own job (waits behind theirs)
    at.session_state["tr_job"] = mine.id
    at.run()
    at.button(key=f"tr_cancel_{mine.id}").click().run()
    assert mine.state == "cancelled" and theirs.state == "running"


def test_a_visitors_id_is_their_address_keyed_with_the_servers_secret():
    from pages import ui

    one = ui.address_id("192.0.2.7", "secret")
    assert one == ui.address_id("192.0.2.7", "secret") and len(one) == 16  # the same address: the same visitor
    assert one != ui.address_id("192.0.2.8", "secret")  # another address: another visitor
    assert one != ui.address_id("192.0.2.7", "another server's secret")  # not to be made without the secret
    assert set(one) <= set("0123456789abcdef")  # nothing of the address shows


def test_a_reload_or_second_tab_from_one_address_is_the_same_visitor(runs, managers, monkeypatch):  # noqa: F811
    """Per-visitor limits and the Cancel of one's own job hold across sessions: the id comes from the address."""
    import streamlit as st

    from cnn_core.config import TrainConfig
    from pages import ui

    address = {"ip": "192.0.2.7"}
    monkeypatch.setattr(type(st.context), "ip_address", property(lambda self: address["ip"]))
    manager = managers(SLEEPER)
    first_tab = open_page("train", operator=False)
    assert "_ui_visitor" not in first_tab.session_state  # no per-session token when the address is known
    mine = manager.submit(TrainConfig(**TINY), name="mine", root=runs, owner=ui.address_id("192.0.2.7", OPERATOR_TOKEN),
                          operator=False, estimated_seconds=60)  # as the first tab's Start would record it
    second_tab = open_page("train", operator=False)  # a reload is a new session too
    assert [b.key for b in second_tab.button if b.key == f"tr_cancel_{mine.id}"] == [f"tr_cancel_{mine.id}"]
    address["ip"] = "192.0.2.8"
    elsewhere = open_page("train", operator=False)
    assert not [b for b in elsewhere.button if b.key == f"tr_cancel_{mine.id}"]
    address["ip"] = "192.0.2.7"
    second_tab.run()
    second_tab.button(key=f"tr_cancel_{mine.id}").click().run()
    assert mine.state == "cancelled"


def show_visitor_id() -> None:
    import streamlit as st

    from pages import ui

    st.text(ui.visitor_id())


def test_without_an_address_each_session_is_its_own_visitor():
    """A browser on the server itself (Streamlit gives localhost no address): a token per session, kept while the
    session lasts."""
    one, two = AppTest.from_function(show_visitor_id).run(), AppTest.from_function(show_visitor_id).run()
    first = one.text[0].value
    assert first != two.text[0].value and len(first) == 16
    assert one.run().text[0].value == first == one.session_state["_ui_visitor"]
