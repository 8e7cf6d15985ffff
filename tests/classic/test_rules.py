"""Find-S and Candidate-Elimination on Mitchell's EnjoySport (1997, Table 2.1), inconsistent data, bad tables."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from imgcls.classic import AttributeTable, CandidateElimination, FindS, Hypothesis, read_attribute_csv
from imgcls.errors import DataError
from tests.classic import ENJOY_SPORT

S4 = "<Sunny, Warm, ?, Strong, ?, ?>"
G4 = ["<Sunny, ?, ?, ?, ?, ?>", "<?, Warm, ?, ?, ?, ?>"]


@pytest.fixture
def enjoy_sport(tmp_path: Path) -> Path:
    path = tmp_path / "enjoysport.csv"
    path.write_text(ENJOY_SPORT)
    return path


def _table(text: str, positive: str | None = None) -> AttributeTable:
    lines = [line.split(",") for line in text.strip().splitlines()]
    return AttributeTable.from_rows(lines[0], lines[1:], positive)


def test_find_s_on_enjoy_sport(enjoy_sport: Path) -> None:
    fs = FindS().fit(read_attribute_csv(enjoy_sport))
    assert str(fs.hypothesis) == S4
    assert fs.covered_negatives == []
    assert fs.predict(["Sunny", "Warm", "Low", "Strong", "Cool", "Same"]) is True


def test_candidate_elimination_on_enjoy_sport(enjoy_sport: Path) -> None:
    ce = CandidateElimination().fit(read_attribute_csv(enjoy_sport))
    assert [str(h) for h in ce.specific] == [S4]
    assert sorted(str(h) for h in ce.general) == sorted(G4)
    # Mitchell 1997, Table 2.6: A is positive, B negative, C and D split the version space
    assert ce.predict(["Sunny", "Warm", "Normal", "Strong", "Cool", "Change"]) is True
    assert ce.predict(["Rainy", "Cold", "Normal", "Light", "Warm", "Same"]) is False
    assert ce.predict(["Sunny", "Warm", "Normal", "Light", "Warm", "Same"]) is None
    assert ce.predict(["Sunny", "Cold", "Normal", "Strong", "Warm", "Same"]) is None


def test_candidate_elimination_keeps_several_general_members() -> None:
    # after the first three examples, G3 has three members (Mitchell 1997, Figure 2.5)
    ce = CandidateElimination().fit(_table("\n".join(ENJOY_SPORT.splitlines()[:4])))
    assert [str(h) for h in ce.specific] == ["<Sunny, Warm, ?, Strong, Warm, Same>"]
    assert sorted(str(h) for h in ce.general) == sorted([*G4, "<?, ?, ?, ?, ?, Same>"])


def test_the_version_space_does_not_depend_on_the_order_of_examples() -> None:
    header, *rows = ENJOY_SPORT.strip().splitlines()
    for perm in itertools.permutations(rows):
        ce = CandidateElimination().fit(_table("\n".join([header, *perm])))
        assert [str(h) for h in ce.specific] == [S4]
        assert sorted(str(h) for h in ce.general) == sorted(G4)


def test_inconsistent_data_names_the_example_that_collapses_the_version_space() -> None:
    text = ENJOY_SPORT + "Sunny,Warm,Normal,Strong,Warm,Same,No\n"  # example 1 again, now negative
    with pytest.raises(DataError, match=r"collapses at example 5 \(table line 6: Sunny, Warm, Normal"):
        CandidateElimination().fit(_table(text))
    fs = FindS().fit(_table(text))
    assert fs.covered_negatives == [4]  # Find-S cannot notice by itself: it reports the covered negative


def test_hypothesis_notation_and_order() -> None:
    bottom = Hypothesis.most_specific(3)
    h = Hypothesis(("Sunny", "?", "?"))
    assert str(bottom) == "<∅, ∅, ∅>" and bottom.format(ascii=True) == "<0, 0, 0>"
    assert h.more_general_or_equal(bottom) and not bottom.more_general_or_equal(h)
    assert Hypothesis.most_general(3).more_general(h)
    assert not bottom.covers(["Sunny", "a", "b"]) and h.covers(["Sunny", "a", "b"])


def test_target_values(tmp_path: Path) -> None:
    t = _table("a,b,class\nx,y,good\nx,z,bad\n", positive="good")
    assert t.labels == (True, False)
    with pytest.raises(DataError, match="name the positive one"):
        _table("a,b,class\nx,y,good\nx,z,bad\n")
    with pytest.raises(DataError, match="never occurs"):
        _table("a,b,class\nx,y,good\n", positive="great")
    assert _table("a,b,t\nx,y,TRUE\nx,z,false\n").labels == (True, False)


def test_numbers_are_refused_unless_they_are_few_integer_codes() -> None:
    with pytest.raises(DataError, match="column 'Temp' holds numbers .* discretise"):
        _table("Sky,Temp,Play\nSunny,71.5,yes\nRainy,65.2,no\n")
    many = "\n".join(f"s,{i},yes" for i in range(12))
    with pytest.raises(DataError, match="12 distinct values"):
        _table("Sky,Count,Play\n" + many)
    assert _table("Sky,Code,Play\nSunny,1,yes\nRainy,2,no\n").domains[1] == ("1", "2")


def test_bad_files_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_attribute_csv(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_attribute_csv(tmp_path / "empty.csv")
    (tmp_path / "short.csv").write_text("a,b,c\nx,y,yes\nx,no\n")
    with pytest.raises(DataError, match="short.csv line 3: 2 values for 3 columns"):
        read_attribute_csv(tmp_path / "short.csv")
    (tmp_path / "hole.csv").write_text("a,b,c\nx,,yes\n")
    with pytest.raises(DataError, match="column 'b' is empty"):
        read_attribute_csv(tmp_path / "hole.csv")
    (tmp_path / "any.csv").write_text("a,b,c\nx,?,yes\n")
    with pytest.raises(DataError, match="holds '\\?'"):
        read_attribute_csv(tmp_path / "any.csv")
    (tmp_path / "header.csv").write_text("a,b,c\n")
    with pytest.raises(DataError, match="no examples"):
        read_attribute_csv(tmp_path / "header.csv")
