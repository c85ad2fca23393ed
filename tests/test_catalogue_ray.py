"""The Ray engine of the batch command on a real local Ray (2 CPUs, 2 actors, tiny models): the same
results as the embedded engine, and an actor killed mid-run still leaves every image done exactly once.

One local Ray serves the whole module (a start costs seconds on 2 cores); skipped without Ray.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tolerance import assert_masks_agree

from grounded_inpaint.catalogue import run_batch
from grounded_inpaint.catalogue.ledger import RECORD_FILE, read_record, read_run_manifest
from grounded_inpaint.images import save_image

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own DataContext deprecations
pytest.importorskip("ray.data")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 * 1024, log_to_driver=False,
             logging_level="error")
    yield
    ray.shutdown()


def _settings(models_dir) -> dict:
    root, paths = models_dir
    return {"prompt": "cup", "models": str(root), "detector": paths["grounding_dino"].name,
            "segmenter": paths["sam_meta"].name, "no_download": True}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-photos")
    g = torch.Generator().manual_seed(3)
    for i in range(10):
        save_image(torch.rand(48, 64, 3, generator=g), folder / ("sub" if i % 4 == 0 else ".") / f"p{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def _pid(row: dict) -> int:
    return int(row["worker"].rsplit(":", 1)[1])


def test_ray_and_embedded_engines_give_the_same_results(photos, models_dir, tmp_path):
    embedded = run_batch([photos], tmp_path / "embedded", _settings(models_dir), progress=False, threads=1)
    on_ray = run_batch([photos], tmp_path / "ray", _settings(models_dir), engine="ray", actors=2, progress=False)
    assert on_ray.pool == "2 actor(s), 1 torch thread(s) each"
    assert (embedded.done, embedded.nothing_found, embedded.failed) == (on_ray.done, on_ray.nothing_found, on_ray.failed)
    assert on_ray.failed == 1 and on_ray.exit_code == 3
    assert os.getpid() not in {_pid(r) for r in on_ray.rows}  # the actors did the work, not the driver
    for a, b in zip(embedded.rows, on_ray.rows):
        assert (a["input"], a["status"], a["instances"], a["selected"], a["settings_digest"]) == \
               (b["input"], b["status"], b["instances"], b["selected"], b["settings_digest"])
        if a["status"] == "failed":
            assert a["reason"] == b["reason"]
            continue
        one, two = Path(a["output"]), Path(b["output"])
        for name in ("mask.png", "cutout.png"):
            assert_masks_agree(torch.from_numpy(np.asarray(Image.open(one / name)) > 127),
                               torch.from_numpy(np.asarray(Image.open(two / name)) > 127))
        da, db = json.loads((one / "detections.json").read_text()), json.loads((two / "detections.json").read_text())
        assert [i["label"] for i in da["instances"]] == [i["label"] for i in db["instances"]]
        assert np.allclose([i["box"] for i in da["instances"]], [i["box"] for i in db["instances"]], atol=1e-3)


def test_killing_an_actor_mid_run_still_does_every_image_once(models_dir, tmp_path):
    folder = tmp_path / "photos"
    g = torch.Generator().manual_seed(5)
    images = [save_image(torch.rand(96, 128, 3, generator=g), folder / f"img{i:02d}.png") for i in range(16)]
    killed: list[int] = []
    arrivals: list[dict] = []

    def kill_the_first_actor(row: dict) -> None:
        arrivals.append(row)
        if not killed:
            pid = _pid(row)
            os.kill(pid, signal.SIGKILL)  # that actor dies with work queued and in flight
            killed.append(pid)

    summary = run_batch([folder], tmp_path / "out", _settings(models_dir), engine="ray", actors=2, progress=False,
                        on_row=kill_the_first_actor)
    assert killed and summary.failed == 0 and summary.exit_code == 0
    assert len(arrivals) == len(images)  # one row per image reached the driver: none lost, none twice
    rows = read_run_manifest(summary.manifest)
    assert sorted(r["input"] for r in rows) == sorted(str(p.absolute()) for p in images)
    later = {_pid(r) for r in arrivals[1:]}
    assert later - set(killed), "the images after the kill were done by a live (restarted or other) actor"
    for row in rows:
        out = Path(row["output"])
        assert sorted(p.name for p in out.iterdir()) == ["batch.json", "cutout.png", "detections.json", "mask.png", "overlay.png"]
        assert read_record(out)["input_sha256"] == row["input_sha256"]
    assert [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".") and p.is_dir()] == []
    assert len(list((tmp_path / "out").rglob(RECORD_FILE))) == len(images)


def test_actors_that_cannot_load_the_models_stop_the_run_in_one_line(photos, models_dir, tmp_path):
    import shutil

    from grounded_inpaint.catalogue.engines import RayEngineError

    root, paths = models_dir
    models = tmp_path / "models"
    shutil.copytree(root / "grounding-dino" / paths["grounding_dino"].name, models / "grounding-dino" / paths["grounding_dino"].name)
    damaged = models / "sams" / paths["sam_meta"].name
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(paths["sam_meta"].read_bytes()[:1000])  # the driver finds the file; every actor fails to read it
    with pytest.raises(RayEngineError, match="could not be read as a PyTorch checkpoint") as err:
        run_batch([photos], tmp_path / "out", {**_settings(models_dir), "models": str(models)}, engine="ray", actors=1,
                  progress=False)
    assert "\n" not in str(err.value) and "run again" in str(err.value)
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_dir()]  # nothing half-written
