import pytest

from grounded_inpaint.prompts import EmptyPromptError, normalize_prompt, split_categories


@pytest.mark.parametrize(
    "text, expected",
    [
        ("shoes", "shoes ."),
        ("Shoes", "shoes ."),
        ("  SHOES  ", "shoes ."),
        ("shoes.", "shoes ."),
        ("shoes, red bag", "shoes . red bag ."),
        ("shoes.bag", "shoes . bag ."),
        ("shoes ; bag\nhat", "shoes . bag . hat ."),
        ("red   shoes", "red shoes ."),
        ("shoes, shoes. Shoes", "shoes ."),
    ],
)
def test_normalize_prompt(text, expected):
    assert normalize_prompt(text) == expected


@pytest.mark.parametrize("text", ["", "   ", ".", ", . ;", "\n\n"])
def test_empty_prompt_is_a_clear_error(text):
    with pytest.raises(EmptyPromptError, match="names no object"):
        normalize_prompt(text)


def test_split_categories_keeps_order():
    assert split_categories("dress, Handbag. dress") == ["dress", "handbag"]


def test_prompt_must_be_text():
    with pytest.raises(TypeError, match="string"):
        split_categories(None)  # type: ignore[arg-type]
