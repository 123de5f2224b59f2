#!/usr/bin/env python3
"""Code-shape figures for a closing note: lines of src/cache and the longest functions in src/.

    python3 bench/code_stats.py [ROOT]

A function's length is counted from its `fn` line to the line closing its body (brace matching
that skips strings, chars and comments), as a reader scrolls it.
"""
import pathlib
import re
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"[^\"]*\"\s+)?fn\s+(\w+)")


def strip(line, state):
    """The line without strings, chars and comments; `state` carries a block comment."""
    out, i = [], 0
    while i < len(line):
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"], i = False, end + 2
        elif line.startswith("//", i):
            break
        elif line.startswith("/*", i):
            state["block"], i = True, i + 2
        elif line[i] == '"' or line.startswith('r"', i) or line.startswith('r#"', i):
            if line[i] == "r":
                hashes = len(line[i + 1:]) - len(line[i + 1:].lstrip("#"))
                close = '"' + "#" * hashes
                end = line.find(close, i + 2 + hashes)
                if end < 0:
                    state["raw"] = close
                    return "".join(out)
                i = end + len(close)
            else:
                j = i + 1
                while j < len(line) and line[j] != '"':
                    j += 2 if line[j] == "\\" else 1
                if j >= len(line):
                    state["raw"] = '"'
                    return "".join(out)
                i = j + 1
        elif re.match(r"'(\\.|[^\\'])'", line[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", line[i:]).group(0))
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def functions(path):
    lines = path.read_text().splitlines()
    state = {"block": False, "raw": None}
    clean = []
    for line in lines:
        if state["raw"]:
            end = line.find(state["raw"])
            if end < 0:
                clean.append("")
                continue
            line, state["raw"] = line[end + len(state["raw"]):], None
        clean.append(strip(line, state))
    for start, line in enumerate(lines):
        match = FN.match(line)
        if not match:
            continue
        depth, opened = 0, False
        for end in range(start, len(clean)):
            text = clean[end]
            if not opened and ";" in text and "{" not in text:
                break  # a declaration without a body
            for ch in text:
                if ch == "{":
                    depth, opened = depth + 1, True
                elif ch == "}":
                    depth -= 1
            if opened and depth == 0:
                yield match.group(7), start + 1, end - start + 1
                break


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    cache = sum(len(p.read_text().splitlines()) for p in (root / "src/cache").rglob("*.rs"))
    print(f"src/cache: {cache} lines in {len(list((root / 'src/cache').rglob('*.rs')))} files")
    found = []
    for path in sorted((root / "src").rglob("*.rs")):
        for name, line, length in functions(path):
            found.append((length, f"{path.relative_to(root)}:{line} {name}"))
    found.sort(reverse=True)
    print("longest functions in src/:")
    for length, where in found[:5]:
        print(f"  {length:4} lines  {where}")


if __name__ == "__main__":
    main()
