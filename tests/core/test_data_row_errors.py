"""A bad row or byte in a dataset file is reported with its file and line (class: a
parser exception that names neither, or one bad row that stops the whole file)."""

import pytest

from ctxbench.errors import DatasetFormatError
from ctxbench.families.aesthetics.ava import parse_ava_txt
from ctxbench.families.aesthetics.data import DataReport
from ctxbench.families.metadata_sentiment.data_files import read_manifest_rows


def test_non_utf8_manifest_names_file_and_line(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_bytes(b"image,label\na.jpg,amusement\nb\xff.jpg,awe\n")
    with pytest.raises(DatasetFormatError, match=r"manifest\.csv: line 3: not UTF-8"):
        read_manifest_rows(path)


def test_ava_integer_overflow_reports_the_row_and_keeps_loading(tmp_path):
    good = " ".join(["1", "953619"] + ["1"] * 10 + ["0", "0", "0"])
    huge = " ".join(["2", "953620"] + ["9" * 30] + ["1"] * 9 + ["0", "0", "0"])
    path = tmp_path / "AVA.txt"
    path.write_text(good + "\n" + huge + "\n" + good.replace("953619", "953621") + "\n")
    report = DataReport()
    rows, lines = parse_ava_txt(path, report)
    assert list(lines) == [1, 3] and rows.shape == (2, 15)
    problems = report.to_json()
    assert "integer_overflow" in str(problems) and "AVA.txt" in str(problems)
