"""Group (community) labels per user and per item: detection, dense codes, names and consistency checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.ingestion import IngestError, ParsedDataset, ParseOptions, parse_file
from app.recsys.synth import PlantedConfig, planted_communities, write_planted_csv

from .conftest import WriteFile, triples

PLANTED = "user,item,weight,user_group,item_group\nu1,i1,1,red,0\nu2,i2,1,blue,1\nu1,i3,1,red,0\nu3,i2,2,blue,1\n"


def user_group_of(parsed: ParsedDataset) -> dict[str, str]:
    """{user id: group label} through the dense codes and the names."""
    assert parsed.user_groups is not None and parsed.user_group_names is not None
    return {str(u): str(parsed.user_group_names[g]) for u, g in zip(parsed.user_ids, parsed.user_groups, strict=True)}


def item_group_of(parsed: ParsedDataset) -> dict[str, str]:
    assert parsed.item_groups is not None and parsed.item_group_names is not None
    return {str(i): str(parsed.item_group_names[g]) for i, g in zip(parsed.item_ids, parsed.item_groups, strict=True)}


def raises(path: Path, options: ParseOptions | None = None) -> IngestError:
    with pytest.raises(IngestError) as caught:
        parse_file(path, options)
    return caught.value


def test_auto_detected_in_csv(write: WriteFile) -> None:
    parsed = parse_file(write(PLANTED))
    assert user_group_of(parsed) == {"u1": "red", "u2": "blue", "u3": "blue"}
    assert item_group_of(parsed) == {"i1": "0", "i2": "1", "i3": "0"}
    # Codes are int64, aligned with the ids, numbering labels in order of first appearance.
    assert parsed.user_groups is not None and parsed.item_groups is not None
    assert parsed.user_groups.dtype == np.int64 and parsed.item_groups.dtype == np.int64
    assert list(parsed.user_groups) == [0, 1, 1] and list(parsed.item_groups) == [0, 1, 0]
    assert list(parsed.user_group_names) == ["red", "blue"]  # type: ignore[arg-type]
    assert list(parsed.item_group_names) == ["0", "1"]  # type: ignore[arg-type]
    assert parsed.item_group_names is not None and parsed.item_group_names.dtype.kind == "U"
    stats = json.loads(json.dumps(parsed.stats))
    assert stats["columns"] == {
        "user": "user",
        "item": "item",
        "weight": "weight",
        "timestamp": None,
        "user_group": "user_group",
        "item_group": "item_group",
    }
    assert stats["n_user_groups"] == 2 and stats["n_item_groups"] == 2
    assert triples(parsed) == {("u1", "i1"): 1.0, ("u2", "i2"): 1.0, ("u1", "i3"): 1.0, ("u3", "i2"): 2.0}


@pytest.mark.parametrize(
    ("user_name", "item_name"),
    [("USER_GROUP", "Item_Group"), ("usergroup", "itemgroup"), ("User_Community", "item_community")],
)
def test_known_names_any_case(write: WriteFile, user_name: str, item_name: str) -> None:
    parsed = parse_file(write(PLANTED.replace("user_group", user_name).replace("item_group", item_name)))
    assert parsed.stats["columns"]["user_group"] == user_name
    assert parsed.stats["columns"]["item_group"] == item_name
    assert item_group_of(parsed)["i3"] == "0" and user_group_of(parsed)["u2"] == "blue"


def test_plain_group_is_the_item_group(write: WriteFile) -> None:
    parsed = parse_file(write("user,item,Group\nu1,i1,a\nu2,i2,b\n"))
    assert parsed.stats["columns"]["item_group"] == "Group"
    assert parsed.stats["columns"]["user_group"] is None
    assert parsed.user_groups is None and parsed.user_group_names is None
    assert item_group_of(parsed) == {"i1": "a", "i2": "b"}
    assert "n_user_groups" not in parsed.stats and parsed.stats["n_item_groups"] == 2


def test_group_column_still_serves_as_the_item_when_needed(write: WriteFile) -> None:
    # User and item are required: a lone "group" next to the user is the item, as before groups.
    parsed = parse_file(write("userId,group\nu1,g1\nu2,g2\n"))
    assert parsed.stats["columns"] == {"user": "userId", "item": "group", "weight": None, "timestamp": None}
    assert parsed.item_groups is None


def test_auto_detected_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "upload.parquet"
    table = pa.table(
        {
            "user_id": ["a", "b", "a", "c"],
            "item_id": ["x", "y", "z", "y"],
            "ItemGroup": pa.array([7, 8, 7, 8], pa.int32()),  # integers become strings
            "user_community": pa.array(["g1", "g2", "g1", "g2"]).dictionary_encode(),
        }
    )
    pq.write_table(table, path)
    parsed = parse_file(path)
    assert parsed.stats["columns"]["user_group"] == "user_community"
    assert parsed.stats["columns"]["item_group"] == "ItemGroup"
    assert user_group_of(parsed) == {"a": "g1", "b": "g2", "c": "g2"}
    assert item_group_of(parsed) == {"x": "7", "y": "8", "z": "7"}


def test_explicit_by_name(write: WriteFile) -> None:
    text = "user,item,team,genre\nu1,i1,t1,rock\nu2,i2,t2,jazz\nu1,i2,t1,jazz\n"
    assert parse_file(write(text)).item_groups is None  # unknown names are not guessed
    parsed = parse_file(write(text), ParseOptions(user_group_column="TEAM", item_group_column="genre"))
    assert parsed.stats["columns"]["user_group"] == "team"
    assert parsed.stats["columns"]["item_group"] == "genre"
    assert user_group_of(parsed) == {"u1": "t1", "u2": "t2"}
    assert item_group_of(parsed) == {"i1": "rock", "i2": "jazz"}


def test_explicit_by_index_with_and_without_header(write: WriteFile) -> None:
    headed = parse_file(
        write("user,item,team,genre\nu1,i1,t1,rock\nu2,i2,t2,jazz\n"), ParseOptions(item_group_column="3")
    )
    assert headed.stats["columns"]["item_group"] == "genre"
    assert item_group_of(headed) == {"i1": "rock", "i2": "jazz"}
    bare = "u1,i1,2,t1,rock\nu2,i2,3,t2,jazz\n"
    parsed = parse_file(write(bare), ParseOptions(user_group_column="3", item_group_column="4"))
    assert parsed.stats["columns"] == {
        "user": 0,
        "item": 1,
        "weight": 2,
        "timestamp": None,
        "user_group": 3,
        "item_group": 4,
    }
    assert user_group_of(parsed) == {"u1": "t1", "u2": "t2"}
    assert item_group_of(parsed) == {"i1": "rock", "i2": "jazz"}


def test_never_guessed_by_position_without_header(write: WriteFile) -> None:
    parsed = parse_file(write("u1,i1,2,100,a\nu2,i2,3,200,b\n"))
    assert parsed.stats["has_header"] is False
    assert parsed.stats["columns"] == {"user": 0, "item": 1, "weight": 2, "timestamp": 3}
    assert parsed.user_groups is None and parsed.item_groups is None


def test_no_group_columns(write: WriteFile) -> None:
    parsed = parse_file(write("userId,movieId,rating\nu1,m1,4\nu2,m2,3\n"))
    assert parsed.user_groups is None and parsed.item_groups is None
    assert parsed.user_group_names is None and parsed.item_group_names is None
    assert parsed.stats["columns"] == {
        "user": "userId",
        "item": "movieId",
        "weight": "rating",
        "timestamp": None,
    }
    assert "n_user_groups" not in parsed.stats and "n_item_groups" not in parsed.stats


def test_labels_stay_strings(write: WriteFile) -> None:
    parsed = parse_file(write("user,item,item_group,user_group\nu1,i1,007,1\nu2,i2,7,01\nu3,i3,7.0,1\n"))
    assert item_group_of(parsed) == {"i1": "007", "i2": "7", "i3": "7.0"}  # three groups, not one
    assert user_group_of(parsed) == {"u1": "1", "u2": "01", "u3": "1"}
    assert parsed.stats["n_item_groups"] == 3 and parsed.stats["n_user_groups"] == 2


def test_conflict_names_both_lines(write: WriteFile) -> None:
    text = "user,item,item_group\nu1,i7,0\nu2,i8,1\n\nu3,i7,1\nu4,i7,2\n"
    error = raises(write(text))
    assert (error.line, error.column) == (5, "item_group")
    assert str(error) == (
        "line 5, column 'item_group': each item has one group, but the item 'i7' is in group '1' here "
        "and in group '0' on its first row (line 2)"
    )


def test_user_conflict_without_header(write: WriteFile) -> None:
    error = raises(write("u1,i1,a\nu2,i2,b\nu1,i3,b\n"), ParseOptions(user_group_column="2"))
    assert (error.line, error.column) == (3, "2")
    assert "the user 'u1' is in group 'b' here and in group 'a'" in str(error)


def test_conflict_in_parquet_names_rows(tmp_path: Path) -> None:
    path = tmp_path / "upload.parquet"
    pq.write_table(pa.table({"user": ["a", "b", "a"], "item": ["x", "y", "z"], "user_group": [1, 2, 3]}), path)
    error = raises(path)
    assert (error.row, error.column) == (3, "user_group")
    assert str(error).endswith("on its first row (row 1)")


def test_empty_label(write: WriteFile) -> None:
    error = raises(write("user,item,user_group,item_group\nu1,i1,a,x\nu2,i2,,y\n"))
    assert str(error) == "line 3, column 'user_group': the user group label is empty"
    assert (error.line, error.column) == (3, "user_group")


def test_missing_label_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "upload.parquet"
    pq.write_table(pa.table({"user": ["a", "b"], "item": ["x", "y"], "item_group": ["g", None]}), path)
    assert str(raises(path)) == "row 2, column 'item_group': the item group label is missing"


def test_float_labels_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "upload.parquet"
    pq.write_table(pa.table({"user": ["a", "b"], "item": ["x", "y"], "item_group": [0.0, 1.0]}), path)
    error = raises(path)
    assert "group labels must be strings or integers" in str(error) and error.column == "item_group"


def test_invalid_utf8_label_names_line_and_column(write: WriteFile) -> None:
    error = raises(write(b"user,item,item_group\nu1,i1,a\nu2,i2,\xff\n"))
    assert (error.line, error.column) == (3, "item_group")


def test_min_weight_dropped_rows_give_no_labels(write: WriteFile) -> None:
    text = (
        "user,item,weight,user_group,item_group\n"
        "u1,i1,5,a,x\n"
        "u2,i1,0.5,b,CONFLICT\n"  # dropped: its disagreeing label does not count
        "u2,i2,5,b,y\n"
        "u3,i3,0.1,c,z\n"  # dropped: u3, i3 and the groups c and z are gone
        "u3,i2,4,b,y\n"
    )
    parsed = parse_file(write(text), ParseOptions(min_weight=1))
    assert parsed.stats["rows_dropped_min_weight"] == 2
    assert user_group_of(parsed) == {"u1": "a", "u2": "b", "u3": "b"}
    assert item_group_of(parsed) == {"i1": "x", "i2": "y"}
    assert parsed.stats["n_user_groups"] == 2 and parsed.stats["n_item_groups"] == 2
    # Without filtering, the same file is inconsistent (users are checked first: u3 on lines 5 and 6).
    error = raises(write(text))
    assert (error.line, error.column) == (6, "user_group")


def test_min_weight_conflict_reports_the_file_line(write: WriteFile) -> None:
    text = "user,item,weight,item_group\nu0,i0,0,q\nu1,i1,5,x\nu2,i2,0,y\nu3,i3,5,y\nu2,i1,5,z\n"
    error = raises(write(text), ParseOptions(min_weight=1))
    assert error.line == 6 and str(error).endswith("on its first row (line 3)")


def test_group_options_on_adjacency(write: WriteFile) -> None:
    with pytest.raises(IngestError, match="no columns to choose"):
        parse_file(write("u1 a b c d\nu2 b\n"), ParseOptions(item_group_column="1"))


def test_group_column_cannot_be_the_item_too(write: WriteFile) -> None:
    with pytest.raises(IngestError, match="both the item and the item group column"):
        parse_file(write(PLANTED), ParseOptions(item_column="item", item_group_column="item"))
    with pytest.raises(IngestError, match="no user group column 'team'"):
        parse_file(write(PLANTED), ParseOptions(user_group_column="team"))


def test_planted_csv_round_trip(tmp_path: Path) -> None:
    config = PlantedConfig(n_groups=3, users_per_group=40, items_per_group=25, interactions_per_user=6, noise=0.1)
    data = planted_communities(config)
    path = tmp_path / "planted.csv"
    write_planted_csv(data, path)
    parsed = parse_file(path)
    assert parsed.item_groups is not None and parsed.item_group_names is not None
    assert parsed.user_groups is not None and parsed.user_group_names is not None
    assert parsed.stats["n_item_groups"] == 3 and parsed.stats["n_user_groups"] == 3
    # Dense order is first appearance: map back by id ("i7" is item 7, "u12" user 12).
    item_index = np.array([int(str(i).removeprefix("i")) for i in parsed.item_ids])
    user_index = np.array([int(str(u).removeprefix("u")) for u in parsed.user_ids])
    item_labels = parsed.item_group_names.astype(np.int64)[parsed.item_groups]
    user_labels = parsed.user_group_names.astype(np.int64)[parsed.user_groups]
    assert np.array_equal(item_labels, data.item_groups[item_index])
    assert np.array_equal(user_labels, data.user_groups[user_index])


def test_random_files_match_a_row_by_row_reference(write: WriteFile) -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        n_rows = int(rng.integers(2, 40))
        users = rng.integers(0, 6, n_rows)
        items = rng.integers(0, 5, n_rows)
        labels = rng.integers(0, 3, 5)[items].astype(str)
        if rng.random() < 0.5:  # now and then, relabel a row
            labels[rng.integers(n_rows)] = str(rng.integers(0, 3))
        lines = [f"u{u},i{i},{g}" for u, i, g in zip(users, items, labels, strict=True)]
        path = write("user,item,item_group\n" + "\n".join(lines) + "\n")
        first: dict[str, tuple[str, int]] = {}  # item -> (label, line)
        conflict = None
        for line, (i, g) in enumerate(zip(items, labels, strict=True), start=2):
            label, seen_at = first.setdefault(f"i{i}", (str(g), line))
            if label != g:
                conflict = (line, seen_at)
                break
        if len(set(users)) < 2 or len(set(items)) < 2:
            continue  # refused for another reason
        if conflict is None:
            parsed = parse_file(path)
            assert item_group_of(parsed) == {item: label for item, (label, _) in first.items()}
            assert parsed.item_group_names is not None
            assert list(parsed.item_group_names) == list(dict.fromkeys(label for label, _ in first.values()))
        else:
            error = raises(path)
            assert error.line == conflict[0] and str(error).endswith(f"(line {conflict[1]})")
