from __future__ import annotations

import json

import pytest

from llm_decide.errors import InvalidAnswer, TaskError
from llm_decide.models import Article
from llm_decide.task import DEFAULT_TASK, DecisionTask, Label, article_block, load_task

TASK = DEFAULT_TASK
IDS = ["a", "b", "c"]


def item(
    article_id: str, label: str = "Sports", confidence: object = 0.9, reason: str = "r"
) -> dict:
    return {"id": article_id, "label": label, "confidence": confidence, "reason": reason}


def answer(*items: dict) -> str:
    return json.dumps({"decisions": list(items)})


def test_batch_schema_pins_ids_in_prompt_order_and_count() -> None:
    schema = TASK.batch_schema(["z", "a", "m"])
    decisions = schema["properties"]["decisions"]
    assert decisions["items"]["properties"]["id"]["enum"] == ["z", "a", "m"]
    assert decisions["minItems"] == decisions["maxItems"] == 3
    assert decisions["items"]["properties"]["label"]["enum"] == [
        "World",
        "Sports",
        "Business",
        "Sci/Tech",
    ]
    assert set(decisions["items"]["required"]) == {"id", "label", "confidence", "reason"}


def test_single_schema_bounds_confidence() -> None:
    confidence = TASK.single_schema()["properties"]["confidence"]
    assert (confidence["minimum"], confidence["maximum"]) == (0, 1)


def test_batch_prompt_delimits_each_article_with_its_id() -> None:
    articles = [Article(id=i, title=f"Title {i}", text=f"Body {i}") for i in IDS]
    messages = TASK.batch_messages(articles, max_chars=100)
    user = messages[-1]["content"]
    assert messages[0]["role"] == "system" and "Sci/Tech" in messages[0]["content"]
    positions = [user.index(f'<article id="{i}">\nTitle {i}\n\nBody {i}\n</article>') for i in IDS]
    assert positions == sorted(positions)


def test_article_text_is_truncated_and_cannot_close_its_block() -> None:
    article = Article(id="x", text="a" * 50 + "</article>" + "b" * 50)
    block = article_block(article, max_chars=70)
    assert block.count("</article>") == 1 and block.endswith("[...truncated]\n</article>")
    assert "<\\/article>" in block
    assert len(block) < 140


def test_odd_ids_are_escaped_in_prompt() -> None:
    block = article_block(Article(id='say "hi"', text="t"), max_chars=10)
    assert block.startswith('<article id="say \\"hi\\"">')


def test_parse_batch_maps_shuffled_items_to_ids() -> None:
    parsed = TASK.parse_batch(
        answer(item("c", "World"), item("a", "Sports"), item("b", "Business")), IDS
    )
    assert {k: v.label for k, v in parsed.decisions.items()} == {
        "a": "Sports",
        "b": "Business",
        "c": "World",
    }
    assert parsed.failures == {}


@pytest.mark.parametrize(
    ("items", "failed", "reason"),
    [
        ([item("a"), item("b")], "c", "missing"),
        ([item("a"), item("b"), item("c"), item("c", "World")], "c", "more than once"),
        ([item("a"), item("b"), item("c", "Weather")], "c", "not one of"),
        ([item("a"), item("b"), item("c", confidence=1.5)], "c", "outside 0..1"),
        ([item("a"), item("b"), item("c", confidence="high")], "c", "not a number"),
        ([item("a"), item("b"), item("c", confidence=True)], "c", "not a number"),
        ([item("a"), item("b"), {"id": "c", "label": "World", "confidence": 0.5}], "c", "reason"),
    ],
)
def test_parse_batch_flags_each_bad_item_alone(items: list, failed: str, reason: str) -> None:
    parsed = TASK.parse_batch(answer(*items), IDS)
    assert set(parsed.failures) == {failed}
    assert reason in parsed.failures[failed]
    assert set(parsed.decisions) == set(IDS) - {failed}


def test_parse_batch_reports_unknown_ids_and_ignores_them() -> None:
    parsed = TASK.parse_batch(answer(item("a"), item("b"), item("zzz")), IDS)
    assert parsed.unknown_ids == ["zzz"]
    assert parsed.failures == {"c": "id missing from the answer"}


@pytest.mark.parametrize(
    "content", ["not json", '{"decisions": "nope"}', "[1, 2]", '{"decisions": [1, 2, 3]}']
)
def test_parse_batch_fails_every_id_on_unusable_answers(content: str) -> None:
    parsed = TASK.parse_batch(content, IDS)
    assert parsed.decisions == {} and set(parsed.failures) == set(IDS)


def test_labels_are_matched_case_insensitively_to_the_task_spelling() -> None:
    parsed = TASK.parse_single('{"label": " sci/tech ", "confidence": 1, "reason": "space"}')
    assert (parsed.label, parsed.confidence) == ("Sci/Tech", 1.0)


def test_parse_single_raises_with_content() -> None:
    with pytest.raises(InvalidAnswer) as info:
        TASK.parse_single('{"label": "Nope", "confidence": 0.5, "reason": ""}')
    assert "Nope" in str(info.value) and info.value.content is not None


def test_reask_appends_answer_and_error() -> None:
    messages = TASK.single_messages(Article(id="x", text="t"), 100)
    again = TASK.reask_messages(messages, "garbage", "not JSON")
    assert again[: len(messages)] == messages
    assert again[-2] == {"role": "assistant", "content": "garbage"}
    assert "not JSON" in again[-1]["content"]


def test_fingerprint_changes_with_everything_that_changes_answers() -> None:
    base = TASK.fingerprint({"temperature": 0}, 4000)
    assert base == TASK.fingerprint({"temperature": 0}, 4000)
    other_labels = DecisionTask(TASK.name, TASK.version, TASK.instructions, TASK.labels[:3])
    described = DecisionTask(
        TASK.name, TASK.version, TASK.instructions, (Label("World", "x"), *TASK.labels[1:])
    )
    changed = {
        other_labels.fingerprint({"temperature": 0}, 4000),
        described.fingerprint({"temperature": 0}, 4000),
        DecisionTask(TASK.name, TASK.version, "Other.", TASK.labels).fingerprint(
            {"temperature": 0}, 4000
        ),
        TASK.fingerprint({"temperature": 0.5}, 4000),
        TASK.fingerprint({"temperature": 0}, 2000),
    }
    assert base not in changed and len(changed) == 5


def test_load_task_reads_toml(tmp_path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "spam"\nversion = 2\ninstructions = "Spam?"\n'
        '[[labels]]\nname = "spam"\ndescription = "ads"\n[[labels]]\nname = "ham"\n'
    )
    task = load_task(path)
    assert task.version == "2" and task.label_names == ["spam", "ham"]
    assert task.labels[0].description == "ads"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name = "x"\ninstructions = "i"\n', "labels"),
        ('name = "x"\ninstructions = "i"\n[[labels]]\nname = "a"\n', "at least two"),
        (
            'name = "x"\ninstructions = "i"\n[[labels]]\nname = "a"\n[[labels]]\nname = "A"\n',
            "twice",
        ),
        ("name = = broken", "not valid TOML"),
    ],
)
def test_load_task_errors_name_the_file_and_problem(tmp_path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert needle in str(info.value) and "bad.toml" in str(info.value)


def test_load_task_missing_file(tmp_path) -> None:
    with pytest.raises(TaskError, match="cannot read task file"):
        load_task(tmp_path / "nope.toml")


def test_json_in_a_code_fence_is_accepted_but_prose_is_not() -> None:
    fenced = '```json\n{"label": "World", "confidence": 0.5, "reason": "r"}\n```'
    assert TASK.parse_single(fenced).label == "World"
    with pytest.raises(InvalidAnswer, match="not valid JSON"):
        TASK.parse_single('Here you go: {"label": "World"}')
