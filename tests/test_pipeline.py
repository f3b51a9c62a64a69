"""End to end: `l2d-jax run` on a tiny demo, its outputs, and a rerun that resumes."""

import json
import pathlib
import shutil

from l2d_jax import cli

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def test_run_writes_report_and_export_and_rerun_resumes(tmp_path, capsys):
  config = tmp_path / "smoke.py"
  config.write_text("import sys\nsys.path.insert(0, %r)\nfrom demo import smoke_config as "
                    "get_config\n" % str(EXPERIMENTS))
  assert cli.main(["run", "--config", str(config), "--workdir", str(tmp_path / "w")]) == 0
  outputs = json.loads(capsys.readouterr().out)
  report = json.loads(pathlib.Path(outputs["report_json"]).read_text())
  assert {"agents", "rejector", "baselines", "curve"} <= report.keys()
  assert [a["agent"] for a in report["agents"]] == ["small-1L", "medium-2L"]
  assert pathlib.Path(outputs["tradeoff_png"]).stat().st_size > 10_000
  export = pathlib.Path(outputs["export"])
  assert {"model.safetensors", "config.json", "router.stablehlo", "agents.json"} <= {
      p.name for p in export.iterdir()}
  # a rerun finds every stage done: same store, same rejector, same report numbers
  shutil.rmtree(tmp_path / "w" / "report")
  assert cli.main(["run", "--config", str(config), "--workdir", str(tmp_path / "w")]) == 0
  again = json.loads(pathlib.Path(json.loads(capsys.readouterr().out)["report_json"]).read_text())
  assert again["rejector"] == report["rejector"]
  assert again["agents"] == report["agents"]
