from conf.errors import MAX_CHARS, first_line


def test_the_first_line_of_a_message_stripped():
    assert first_line(RuntimeError("\n  bucket missing\nat line 2\n")) == "bucket missing"


def test_an_exception_without_a_message_is_named_by_its_class():
    assert first_line(TimeoutError()) == "TimeoutError"


def test_a_text_is_taken_as_it_is_and_capped():
    assert first_line("java.io.IOException: refused\n\tat x") == "java.io.IOException: refused"
    assert first_line("") == ""
    assert first_line("x" * (MAX_CHARS + 10)) == "x" * MAX_CHARS
