"""Which files a dataset run sees, and what happens to the ones that are not images."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from dataset_helpers import HIDDEN, JUNK, make_dataset, one_torch_thread  # noqa: F401
from reportgen.dataset.decode import batches
from reportgen.dataset.files import list_dataset
from reportgen.errors import ReportError
from reportgen.inputs.preprocess import Preprocessing


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("dataset"), faces=6)


def test_folder_is_listed_recursively_sorted_without_hidden_files(dataset: Path) -> None:
    files = list_dataset(dataset)
    assert files.kind == "folder" and files.root == dataset
    assert list(files.paths) == sorted(files.paths)
    assert "faces/group0/face000.png" in files.paths and "photos/crops/coffee.jpg" in files.paths
    assert set(JUNK) <= set(files.paths)
    assert not set(HIDDEN) & set(files.paths)
    assert all("\\" not in path and not path.startswith("/") for path in files.paths)
    assert len(files) == files.total == 15 + 6 + 4


def test_sort_is_by_the_joined_relative_path(tmp_path: Path) -> None:
    for name in ("a-b/x.png", "a/b.png", "a/z/y.png", "a.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_dataset(tmp_path).paths == ("a-b/x.png", "a.png", "a/b.png", "a/z/y.png")


def test_limit_keeps_the_first_files(dataset: Path) -> None:
    files = list_dataset(dataset, limit=3)
    assert files.paths == list_dataset(dataset).paths[:3] and files.total == 25
    with pytest.raises(ReportError, match="--limit"):
        list_dataset(dataset, limit=0)


def test_list_file_paths_are_relative_to_it(dataset: Path, tmp_path: Path) -> None:
    listing = dataset / "photos" / "list.txt"
    listing.write_text("# some photos\n\ncamera.png\n  crops/rocket.jpg  \n"
                       "../faces/group1/face001.png\n")
    try:
        files = list_dataset(listing)
        assert files.kind == "list" and files.root == dataset / "photos"
        assert files.paths == ("camera.png", "crops/rocket.jpg", "../faces/group1/face001.png")
        assert all(files.path(i).is_file() for i in range(len(files)))
    finally:
        listing.unlink()


def test_absolute_and_home_paths_in_a_list_are_shown_without_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read from where they are; shown relative to the list's folder, else by the shortest
    tail that tells them apart (two "b.png" from different folders)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    wanted = ("list/a.png", "list/sub/c.png", "home/pics/b.png", "other/x/b.png")
    for name in wanted:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    listing = tmp_path / "list" / "files.txt"
    listing.write_text(f"{tmp_path / 'list/a.png'}\n{tmp_path / 'list/sub/../sub/c.png'}\n"
                       f"~/pics/b.png\n{tmp_path / 'other/x/b.png'}\n")
    files = list_dataset(listing)
    assert files.paths == ("a.png", "sub/c.png", "pics/b.png", "x/b.png")
    assert [files.path(i).read_bytes() for i in range(len(files))] == \
        [name.encode() for name in wanted]
    assert files.location(2) == str(tmp_path / "home/pics/b.png")


def _only_hidden(folder: Path) -> Path:
    (folder / ".only").mkdir()
    (folder / ".only" / "a.png").write_bytes(b"x")
    (folder / ".b.png").write_bytes(b"x")
    return folder


def _empty_list(folder: Path) -> Path:
    (folder / "list.txt").write_text("# nothing\n\n")
    return folder / "list.txt"


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nowhere", "does not exist"),
    (lambda p: p, "has no files"),
    (_only_hidden, "has no files"),
    (_empty_list, "names no images"),
])
def test_missing_or_empty_dataset_is_one_clear_line(tmp_path: Path, make: Callable[[Path], Path],
                                                    message: str) -> None:
    with pytest.raises(ReportError, match=message) as caught:
        list_dataset(make(tmp_path))
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("workers", [0, 2])
def test_junk_comes_back_skipped_with_reasons(dataset: Path, workers: int) -> None:
    files = list_dataset(dataset)
    found = list(batches(files, Preprocessing(32, 32), range(len(files)), batch_size=4,
                         workers=workers))
    skipped = {item.path: item.reason for batch in found for item in batch.skipped}
    assert set(skipped) == set(JUNK)
    assert "not an image" in skipped["junk/notes.png"]
    assert "empty" in skipped["junk/empty.jpg"]
    assert "damaged or truncated" in skipped["junk/truncated.png"]
    indices = torch.cat([batch.indices for batch in found]).tolist()
    assert indices == [i for i, path in enumerate(files.paths) if path not in skipped]
    assert sum(batch.count for batch in found) == len(files)
    assert all(batch.images.shape[1:] == (3, 32, 32) for batch in found)


def test_a_url_lists_like_its_folder(tmp_path: Path) -> None:
    """file:// goes through the same pyarrow code as s3:// and gs:// (no network here)."""
    pytest.importorskip("pyarrow", reason="URL datasets need pyarrow (the ray extra)")
    root = make_dataset(tmp_path / "data")
    folder, url = list_dataset(root), list_dataset(root.as_uri() + "/")
    assert url.paths == folder.paths and url.kind == "url" and url.root.name == "data"
    assert url.location(0) == f"{root.as_uri()}/{folder.paths[0]}"
    assert list_dataset(root.as_uri(), limit=3).paths == folder.paths[:3]
    with pytest.raises(ReportError, match="does not exist"):
        list_dataset((tmp_path / "missing").as_uri())


@pytest.mark.parametrize("given", ["/home/me/photos/data", "s3://my-bucket/team/data/"])
def test_the_recorded_command_keeps_only_the_datasets_base_name(given: str) -> None:
    from reportgen.options import BuildOptions

    words = BuildOptions(dataset=given).command_words(typed=True)
    assert words == ["--dataset", "data"]
