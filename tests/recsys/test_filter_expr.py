"""The filter language: parsing with positions, checking against a schema, evaluating over attribute columns."""

from __future__ import annotations

import numpy as np
import pytest

from app.recsys import attributes as A
from app.recsys.filter_expr import FilterError, canonical, evaluate, parse, validate


@pytest.fixture
def table() -> A.AttributeTable:
    return A.AttributeTable(
        np.array(["a", "b", "c", "d"]),
        {
            "category": A.categorical(["books", "music", None, "books"]),
            "tags": A.tags([["x", "y"], None, ["y"], ["z"]]),
            "price": A.numeric(np.array([10, 25, np.nan, 5.0])),
            "in_stock": A.boolean([True, False, None, True]),
        },
    )


def _keep(table: A.AttributeTable, text: str, order=("a", "b", "c", "d")) -> list[str]:
    ids = np.array(order)
    tree = parse(text)
    validate(tree, table.schema)
    mask = evaluate(tree, table.aligned(ids, {v: i for i, v in enumerate(order)}))
    return [i for i, m in zip(order, mask, strict=True) if m]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('category = "books"', ["a", "d"]),
        ("category == 'books'", ["a", "d"]),
        ('category != "books"', ["b"]),  # no value matches no test
        ('category in ("books", "music") and not tags has "y" and price < 20', ["d"]),
        ('CATEGORY = "books"', None),  # attribute names are case-sensitive: unknown
        ('category = "books" OR in_stock = false', ["a", "b", "d"]),
        ("not price < 20", ["b", "c"]),  # not negates: items without a price are kept
        ('tags has all ("x", "y")', ["a"]),
        ('tags has any ("z", "x")', ["a", "d"]),
        ("price is null", ["c"]),
        ("price is not null and price >= 10", ["a", "b"]),
        ("tags exists", ["a", "c", "d"]),
        ("in_stock", ["a", "d"]),
        ('id in ("b", "c") or id = "zz"', ["b", "c"]),
        ('id not in ("a")', ["b", "c", "d"]),
        ('(category = "music" or price = 5) and in_stock', ["d"]),
        ("price in (10, 25)", ["a", "b"]),
        ("`price` > -1e3", ["a", "b", "d"]),
    ],
)
def test_evaluates_as_documented(table, text, kept):
    if kept is None:
        with pytest.raises(FilterError, match="unknown attribute 'CATEGORY'"):
            _keep(table, text)
    else:
        assert _keep(table, text) == kept
        assert _keep(table, text, order=("d", "c", "b", "a")) == kept[::-1]  # aligned to any catalogue order


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("", 0, "empty"),
        ('category = "x" and', 18, "expected an attribute name"),
        ('category = "x" category', 15, "expected and, or"),
        ("(price < 3", 10, "expected ')'"),
        ("price < 'x", 8, "unterminated"),
        ("price ~ 3", 6, "unexpected character"),
        ("colour = 'red'", 0, "unknown attribute 'colour'"),
        ("price = 'x'", 8, "compare it with a number"),
        ("category < 'x'", 0, "needs a numeric attribute"),
        ("tags = 'x'", 0, "use has" if False else "test it with has"),
        ("price has 'x'", 0, "multi-valued"),
        ("category", 0, "not boolean"),
        ("in_stock = 'yes'", 11, "true or false"),
    ],
)
def test_errors_name_their_position(table, text, position, words):
    with pytest.raises(FilterError) as caught:
        validate(parse(text), table.schema)
    assert caught.value.position == position and words in str(caught.value)


def test_canonical_spelling_ignores_layout_and_keyword_case():
    assert canonical(parse('category  =  "a" AND price<3')) == canonical(parse("category = 'a' and price < 3.0"))
    assert canonical(parse("a = 1 or b = 2")) != canonical(parse("a = 1 and b = 2"))


def test_upserts_merge_rows_and_columns_and_survive_a_save(tmp_path, table):
    update = A.AttributeTable(
        np.array(["b", "e"]),
        {"category": A.categorical(["art", None]), "tags": A.tags([["q"], ["x"]]), "size": A.numeric(np.array([1, 2]))},
    )
    merged = table.upsert(update)
    assert merged.ids.tolist() == ["a", "b", "c", "d", "e"]
    assert merged.row("b") == {"category": "art", "tags": ["q"], "price": 25.0, "in_stock": False, "size": 1.0}
    assert merged.row("e") == {"tags": ["x"], "size": 2.0}
    assert merged.row("a") == table.row("a") and merged.row("zz") is None
    A.save_table(tmp_path, merged)
    loaded = A.load_table(tmp_path)
    assert loaded.schema == merged.schema and [loaded.row(i) for i in "abcde"] == [merged.row(i) for i in "abcde"]


def test_cold_items_sit_at_the_mean_of_the_items_sharing_their_values():
    from app.recsys.cold_items import attribute_vectors

    V = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]], dtype=np.float32)
    table = A.AttributeTable(
        np.array(["m0", "m1", "m2", "m3", "c0", "c1", "c2"]),
        {
            "genre": A.categorical(["a", "a", "b", "b", "a", None, "zz"]),
            "tags": A.tags([["x"], None, ["x"], None, ["x"], ["x"], None]),
        },
    )
    model_columns = table.aligned(np.array(["m0", "m1", "m2", "m3"]))
    vectors, placed = attribute_vectors(V, model_columns, table.aligned(np.array(["c0", "c1", "c2"])))
    # c0: genre a (mean of m0, m1 = [2, 0]) and tag x (mean of m0, m2 = [0.5, 1]): their mean.
    np.testing.assert_allclose(vectors[0], [1.25, 0.5])
    np.testing.assert_allclose(vectors[1], [0.5, 1.0])  # tag x only
    assert placed.tolist() == [True, True, False]  # zz: no model item has it
