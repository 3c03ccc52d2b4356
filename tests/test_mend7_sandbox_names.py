"""``accumopt sandbox --params FILE`` names its chart from the file's stem AND its content.

Found by an audit: the name used the params file's stem only, so ``--params a/best.json`` and ``--params
b/best.json`` (two studies' best trials) wrote the same ``<TICKER>_p-best.html`` and the second run silently
overwrote the first's chart. Oracle: the SHA-256 of the file's bytes, computed here."""

from __future__ import annotations

import hashlib
import json

from click.testing import CliRunner

from optimizer.cli import main
from optimizer.paths import content_label

PARAMS = {"variant": "B", "z_window": 15, "buy_threshold": 65, "sell_threshold": 35, "exit": "first_dist",
          "time_stop": 20, "stop_loss": 0.08}


def test_content_label_is_the_stem_and_the_contents_digest(tmp_path):
    a = tmp_path / "a" / "best.json"
    b = tmp_path / "b" / "best.json.gz"
    c = tmp_path / "c" / "best.json"
    for p, text in ((a, "{}"), (b, "{ }"), (c, "{}")):
        p.parent.mkdir()
        p.write_text(text, encoding="utf-8")
    assert content_label(a) == "best-" + hashlib.sha256(b"{}").hexdigest()[:8]
    assert content_label(b) == "best-" + hashlib.sha256(b"{ }").hexdigest()[:8]  # format and compression dropped
    assert content_label(c) == content_label(a)  # the same content: the same chart, wherever the file lies


def test_two_params_files_of_one_name_write_two_charts(synth_db, tmp_path):
    files = {}
    for folder, buy in (("a", 65), ("b", 75)):
        (tmp_path / folder).mkdir()
        pf = tmp_path / folder / "best.json"
        pf.write_text(json.dumps({"study": folder, "number": 1, "value": 0.1, "params": {**PARAMS, "buy_threshold": buy}}),
                      encoding="utf-8")
        files[folder] = pf
    root = tmp_path / "out"
    written = {}
    for folder, pf in [*files.items(), ("a", files["a"])]:  # a, b, then a again
        res = CliRunner().invoke(main, ["sandbox", "AAPL", "--params", str(pf), "--db",
                                        str(synth_db), "--out", str(root), "--no-png"], env={"ACCUMOPT_DB": None})
        assert res.exit_code == 0, res.output
        (path,) = [line for line in res.output.splitlines() if line.endswith(".html")]
        written.setdefault(folder, set()).add(path)
    assert len(written["a"]) == 1  # deterministic: the same file again
    (pa,), (pb,) = written["a"], written["b"]
    assert pa != pb
    for folder, p in (("a", pa), ("b", pb)):
        digest = hashlib.sha256(files[folder].read_bytes()).hexdigest()[:8]
        assert p.endswith(f"AAPL_p-best-{digest}.html")
    assert sorted(x.name for x in (root / "sandbox").glob("*.html")) == sorted(
        p.rsplit("/", 1)[1] for p in (pa, pb))
