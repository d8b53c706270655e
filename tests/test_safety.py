"""The user's files are safe, and the site is safe to publish.

A build goes into a temporary folder beside the target and is swapped in only when complete;
only an earlier report is ever replaced; Ctrl-C or a crash at any point leaves the previous
report byte for byte and no temporary folder. Names are escaped, paths stay inside the site,
no absolute path of the user's machine is written, checkpoints are data only.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import TinyNet, hooks_left, needs_offline_weights, site_files
from reportgen import ReportError, build_report

REPO = Path(__file__).resolve().parent.parent


def tiny_report(site: Path, image, **options):
    torch.manual_seed(0)
    options.setdefault("size", 24)
    return build_report(TinyNet(), None, image, site, **options)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time: 'exactly as it was' means both."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture
def previous(tmp_path: Path, gradient_image) -> Path:
    """An earlier report at tmp_path/site."""
    site = tmp_path / "site"
    tiny_report(site, gradient_image)
    return site


# ---------------------------------------------------------------- what may be replaced


def test_new_and_empty_folders_are_used(tmp_path, gradient_image):
    tiny_report(tmp_path / "deep" / "new" / "site", gradient_image)
    assert (tmp_path / "deep" / "new" / "site" / "index.html").is_file()
    (tmp_path / "empty").mkdir()
    tiny_report(tmp_path / "empty", gradient_image)
    assert (tmp_path / "empty" / "manifest.json").is_file()
    assert oct((tmp_path / "empty").stat().st_mode & 0o777) == "0o755"  # readable when served


def test_previous_report_is_replaced_completely(previous, gradient_image):
    assert any(path.name.startswith("shared") for path in (previous / "img").iterdir())
    report = tiny_report(previous, gradient_image, layers="stem")
    assert len(report.layers) == 1
    # a swap, not an overlay: the old report's pictures and pages of other layers are gone
    assert not any(path.name.startswith("shared") for path in (previous / "img").iterdir())
    assert not (previous / "layer-shared.html").exists()
    assert leftovers(previous.parent) == []


def test_files_reportgen_did_not_write_are_kept(previous, gradient_image, caplog):
    """A Pages CNAME, notes, a folder of extras, a picture of one's own: all survive
    rebuilds, byte for byte, and the log says so."""
    mine = {"CNAME": b"cnn.example.org\n", "NOTES.md": b"# notes", "extras/a/b.txt": b"b",
            "img/my-figure.png": b"\x89PNG mine"}
    for name, content in mine.items():
        (previous / name).parent.mkdir(parents=True, exist_ok=True)
        (previous / name).write_bytes(content)
    with caplog.at_level("INFO", logger="reportgen"):
        tiny_report(previous, gradient_image, layers="stem")
    assert "Kept 4 files (CNAME, NOTES.md, extras/a/b.txt, img/my-figure.png)" in caplog.text
    tiny_report(previous, gradient_image)  # and again: they are still not ours
    for name, content in mine.items():
        assert (previous / name).read_bytes() == content, name
    assert not set(mine) & set(json.loads((previous / "manifest.json").read_text())["files"])
    assert leftovers(previous.parent) == []


def test_a_file_of_the_users_that_a_rebuild_would_overwrite_is_refused(tmp_path,
                                                                      gradient_image):
    site = tmp_path / "site"
    tiny_report(site, gradient_image, layers="stem")
    (site / "layer-shared.html").write_text("my own page")
    before = snapshot(site)
    with pytest.raises(ReportError, match=r"holds 1 file \(layer-shared.html\), which "
                                          "reportgen did not write and would now overwrite"):
        tiny_report(site, gradient_image)
    assert snapshot(site) == before
    assert leftovers(tmp_path) == []


def test_a_second_build_into_the_same_folder_at_once_stops(previous, gradient_image):
    import fcntl

    from reportgen.publish.staging import lock_path

    before = snapshot(previous)
    with open(lock_path(previous), "a+b") as held:  # as the first build holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ReportError, match="Another reportgen build is writing '.*site' "
                                              "right now; wait for it to finish"):
            tiny_report(previous, gradient_image, layers="stem")
    assert snapshot(previous) == before
    assert leftovers(previous.parent) == []
    tiny_report(previous, gradient_image, layers="stem")  # once it is done, a build may


def test_foreign_folder_is_refused_untouched(tmp_path, gradient_image):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    (mine / "manifest.json").write_text('{"generator": "something else"}')
    before = snapshot(mine)
    with pytest.raises(ReportError, match="'.*thesis' is not empty and is not a reportgen report"):
        tiny_report(mine, gradient_image)
    assert snapshot(mine) == before
    assert leftovers(tmp_path) == []


def test_file_target_is_refused(tmp_path, gradient_image):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(ReportError, match="exists and is not a folder"):
        tiny_report(target, gradient_image)
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("where", [".", "..", "ABS", "ABS_PARENT"])
def test_current_folder_and_parents_are_refused(tmp_path, monkeypatch, gradient_image, where):
    work = tmp_path / "project" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    target = {".": ".", "..": "..", "ABS": str(work), "ABS_PARENT": str(tmp_path)}[where]
    with pytest.raises(ReportError, match="current folder or one of its parents"):
        tiny_report(Path(target), gradient_image)
    assert sorted(os.listdir(work)) == []


def test_home_folder_is_refused(tmp_path, monkeypatch, gradient_image):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReportError, match="home folder"):
        tiny_report(home, gradient_image)
    with pytest.raises(ReportError, match="home folder"):
        tiny_report(Path("~").expanduser(), gradient_image)
    assert os.listdir(home) == []


def test_refusal_comes_before_any_heavy_work(tmp_path, monkeypatch, gradient_image):
    import reportgen.build

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded for a folder that is refused")

    monkeypatch.setattr(reportgen.build, "load_model", must_not_load)
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "a.jpg").write_bytes(b"x")
    with pytest.raises(ReportError, match="not a reportgen report"):
        build_report("vgg16", "DEFAULT", "astronaut", mine)
    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(ReportError, match="Cannot write the site folder 'sub' in '.*afile': "
                                          "'.*afile' is a file, not a folder"):
        build_report("vgg16", "DEFAULT", "astronaut", tmp_path / "afile" / "sub")
    assert (tmp_path / "afile").read_text() == "keep me"


def test_failed_build_removes_the_parents_it_made(tmp_path, gradient_image):
    with pytest.raises(ReportError, match="matches no conv layer"):
        tiny_report(tmp_path / "a" / "b" / "site", gradient_image, layers="nothing")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- interrupts and crashes


class InterruptedNet(TinyNet):
    """Raises KeyboardInterrupt from a forward hook after ``after`` real conv calls."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.seen = after, 0
        for module in (self.body[1], self.body[3], self.body[5], self.shared):
            module.register_forward_hook(self._maybe_interrupt)

    def _maybe_interrupt(self, module, inputs, output) -> None:
        if output.is_meta:  # reportgen's shape check runs on the meta device: not a build
            return
        self.seen += 1
        if self.seen >= self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize("after", [1, 4])
def test_keyboard_interrupt_from_a_hook_keeps_previous_report(previous, gradient_image, after):
    before = snapshot(previous)
    torch.manual_seed(0)
    net = InterruptedNet(after)
    net.train()
    with pytest.raises(KeyboardInterrupt):
        build_report(net, None, gradient_image, previous, size=24)
    assert net.seen == after  # it really stopped mid-build
    assert snapshot(previous) == before
    assert leftovers(previous.parent) == []
    assert hooks_left(net) == ["body.1", "body.3", "body.5", "shared"]  # only the user's own
    assert net.training  # mode restored


def test_crash_while_writing_pngs_keeps_previous_report(previous, gradient_image, monkeypatch):
    import reportgen.pictures.pngio

    real = reportgen.pictures.pngio.save_png

    def failing(pixels, path, *args):
        if "body" in path.name:
            raise OSError(28, "No space left on device")
        real(pixels, path, *args)

    before = snapshot(previous)
    monkeypatch.setattr(reportgen.pictures.pngio, "save_png", failing)
    with pytest.raises(OSError, match="No space left"):
        tiny_report(previous, gradient_image)
    assert snapshot(previous) == before
    assert leftovers(previous.parent) == []


def test_crash_in_the_middle_of_the_swap_puts_the_old_report_back(previous, gradient_image,
                                                                   monkeypatch):
    real_rename = Path.rename
    calls: list[str] = []

    def rename(self, target):
        calls.append(Path(self).name)
        if ".tmp-" in Path(self).name:  # the old report is already moved aside by now
            raise KeyboardInterrupt
        return real_rename(self, target)

    before = snapshot(previous)
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        tiny_report(previous, gradient_image)
    assert calls[0] == "site" and ".tmp-" in calls[1]  # retire the old, then the failed swap
    assert snapshot(previous) == before
    assert leftovers(previous.parent) == []


def test_sigint_during_the_swap_is_held_until_it_is_done(previous, gradient_image, monkeypatch):
    real_rename = Path.rename

    def rename(self, target):
        if ".tmp-" in Path(self).name:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the two renames
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        tiny_report(previous, gradient_image, layers="stem")
    manifest = (previous / "manifest.json").read_text()
    assert '"name": "stem"' in manifest and "shared" not in manifest  # the new one, complete
    assert leftovers(previous.parent) == []


SLOW_BUILD = textwrap.dedent("""
    import sys, time
    import numpy as np, torch
    from torch import nn
    from reportgen import build_report

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            x = self.a(x)
            if not x.is_meta:
                open(sys.argv[2], "w").close()   # tell the test we are mid-build
                time.sleep(60)
            return self.b(x).mean((2, 3))

    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    build_report(Slow(), None, image, sys.argv[1], size=16)
""")


def test_real_sigint_mid_build_keeps_previous_report(previous, tmp_path):
    before = snapshot(previous)
    marker = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(previous), str(marker)],
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.05)
        staging = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
        assert len(staging) == 1  # really mid-build: the staged folder exists
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert snapshot(previous) == before
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- safe to publish


def hostile_net() -> nn.Module:
    net = nn.Module()
    names = ['<script>alert("x")</script>', "it's \"quoted\" & <b>", "../../escape", "/abs"]
    for name in names:
        net._modules[name] = nn.Conv2d(3, 3, 3, padding=1)  # bypasses add_module's checks

    def forward(x):
        for name in names:
            x = net._modules[name](x)
        return x.mean((2, 3))

    net.forward = forward
    return net


def test_hostile_names_render_as_inert_text_inside_the_site(tmp_path, gradient_image):
    image = tmp_path / "<script>alert('img')<\\script> \"q\".png"
    Image.fromarray(gradient_image).save(image)
    site = tmp_path / "out" / "site"
    report = build_report(hostile_net(), None, image, site, size=16)
    assert [layer.name for layer in report.layers][0] == '<script>alert("x")</script>'
    written = [p for p in (tmp_path).rglob("*") if p.is_file()]
    outside = [p for p in written if site not in p.parents and p != image]
    assert outside == []  # '../' in a layer name cannot write outside the site
    for path in site.rglob("*"):
        assert path.resolve().is_relative_to(site.resolve())
    for page in site.glob("*.html"):
        html = page.read_text()
        assert "<script>alert" not in html and "<b>" not in html, page.name
        assert "<script" not in html.replace('<script src="static/report_cb_', "")
    index = (site / "index.html").read_text()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in index
    assert "it&#39;s &#34;quoted&#34; &amp; &lt;b&gt;" in index
    assert "&lt;script&gt;alert(&#39;img&#39;)" in index
    pages = sorted(p.name for p in site.glob("layer-*.html"))
    assert all("/" not in name and ".." not in name and "<" not in name for name in pages)


def test_every_template_autoescapes():
    from reportgen.report.pages import environment, template_dir

    env = environment()
    for template in (template_dir()).glob("*.html"):
        rendered_name = template.name
        assert env.autoescape is True or env.autoescape(rendered_name)
        assert "|safe" not in template.read_text().replace(" ", ""), rendered_name
        assert "autoescape false" not in template.read_text()


def test_no_absolute_path_anywhere_in_the_site(tmp_path):
    """A real CLI run with absolute paths to image, checkpoint and site: only base names."""
    from torchvision.models import resnet18

    secret = tmp_path / "home" / "alice" / "secret-project"
    secret.mkdir(parents=True)
    image = secret / "holiday photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), np.uint8)).save(image)
    checkpoint = secret / "best.pth"
    torch.manual_seed(0)
    torch.save(resnet18(num_classes=7).state_dict(), checkpoint)
    site = secret / "reports" / "site"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "reportgen", "build", "-m", "resnet18", "-w", str(checkpoint),
         "-i", str(image), f"--site-dir={site}", "--size", "32", "--layers", "layer1.*"],
        capture_output=True, text=True, env=env, cwd=secret, timeout=300)
    assert done.returncode == 0, done.stderr
    forbidden = [str(tmp_path), "alice", "secret-project", str(Path.home()), os.getcwd(),
                 str(REPO), sys.prefix]
    files = site_files(site)
    assert "manifest.json" in files and len(files) > 5
    for name, data in files.items():
        text = data.decode("utf-8", errors="replace")
        for needle in forbidden:
            assert needle not in text and needle not in name, (name, needle)
    manifest = files["manifest.json"].decode()
    assert '"holiday photo.png"' in manifest and '"best.pth"' in manifest
    command = json.loads(manifest)["command"]
    assert "'holiday photo.png'" in command and "best.pth" in command and "site" in command


@pytest.fixture
def torch_load_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of every torch.load call made while the test runs."""
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_checkpoints_are_loaded_with_weights_only(tmp_path, gradient_image, torch_load_calls):
    calls = torch_load_calls
    path = tmp_path / "tiny.pth"
    torch.save(TinyNet().state_dict(), path)
    build_report(TinyNet(), path, gradient_image, tmp_path / "s", size=16)
    assert calls and all(call.get("weights_only") is True for call in calls)


@needs_offline_weights
def test_named_weights_are_loaded_with_weights_only(torch_load_calls):
    from reportgen.inputs.models import load_model

    calls = torch_load_calls
    load_model("mobilenet_v2", "IMAGENET1K_V1")
    assert calls and all(call.get("weights_only") is True for call in calls)


class Exploit:
    """What a malicious checkpoint does: run code while being unpickled."""

    def __reduce__(self):
        return (os.system, (f"touch {EXPLOIT_MARKER}",))


EXPLOIT_MARKER = Path("/tmp") / f"reportgen-exploit-{os.getpid()}"


def test_malicious_pickle_never_runs(tmp_path, gradient_image):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": TinyNet().state_dict(), "hook": Exploit()}, path)
    EXPLOIT_MARKER.unlink(missing_ok=True)
    with pytest.raises(ReportError, match="contains Python objects"):
        build_report(TinyNet(), path, gradient_image, tmp_path / "s", size=16)
    assert not EXPLOIT_MARKER.exists()
    assert not (tmp_path / "s").exists()
