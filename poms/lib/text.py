"""Small text helpers."""

LOG_TAIL_BYTES = 64 * 1024


def tail_file(path, limit=LOG_TAIL_BYTES):
    """The last `limit` bytes of a text file (with a note when cut); "" if it does not exist."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            data = handle.read()
    except (FileNotFoundError, IsADirectoryError):
        return ""
    text = data.decode("utf-8", "replace")
    return ("… (earlier output cut) …\n" + text) if size > limit else text
