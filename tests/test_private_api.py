"""No private attribute of a third-party library anywhere in the package (a source scan).

An attribute ``_name`` is promptkit's own when promptkit defines that name somewhere:
``self._name = ...``/``cls._name = ...``, ``def _name``, a class-level or module-level
``_name = ...``, a ``__slots__`` entry, or an import alias. Any other ``_name`` reached
through an attribute, ``getattr``/``setattr``/``hasattr``/``delattr`` with a literal, or
imported from a non-promptkit module belongs to someone else.

A few internals of urllib3 and requests are named outright, because promptkit may well
define a name of its own that happens to match (``HTTPStream._sock``): any mention of
them as an attribute, except on ``self``/``cls`` inside a class of promptkit's own that
does not derive from a third-party class, is a finding.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Set, Tuple


PACKAGE = Path(__file__).resolve().parents[1] / "promptkit"

# Internals of urllib3/requests/http.client that promptkit may never touch.
INTERNALS = frozenset({"pool_classes_by_scheme", "ConnectionCls", "_put_conn", "_fp", "_sock", "_connection", "_pool"})
# Names with no underscore: any mention at all (a name, an attribute, a keyword, a string) counts.
PLAIN_INTERNALS = frozenset(name for name in INTERNALS if not name.startswith("_"))
# Underscore names that the standard library documents as public API.
DOCUMENTED = frozenset({
    "_getframe",  # sys._getframe, in the sys module's documentation
    "_exit",  # os._exit
    "_replace", "_asdict", "_fields", "_field_defaults", "_make",  # namedtuple's documented methods
})  # fmt: skip
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_module(module: Optional[str], level: int) -> bool:
    return level > 0 or module == "promptkit" or (module or "").startswith("promptkit.")


def defined_names(trees: Iterable[ast.AST]) -> Set[str]:
    """Every underscore name the given modules define (see the module docstring)."""
    names: Set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)  # module level, class level (and locals, which are harmless)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                own = isinstance(node, ast.ImportFrom) and _own_module(node.module, node.level)
                for alias in node.names:
                    if alias.asname:
                        names.add(alias.asname)
                    elif own:
                        names.add(alias.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == "__slots__":
                        names.update(_strings(node.value))
    return {name for name in names if _private(name)}


def _strings(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child.value


def _third_party_bases(tree: ast.AST) -> Set[str]:
    """Names a module imports from outside promptkit and the standard ``object``: candidate base classes."""
    names: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not _own_module(node.module, node.level):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


class _Scanner(ast.NodeVisitor):
    def __init__(self, own: Set[str], imported: Set[str]) -> None:
        self.own = own
        self.imported = imported
        self.found: List[Tuple[int, str]] = []
        self.classes: List[bool] = []  # per enclosing class: does it derive from a third-party class?

    def report(self, node: ast.AST, why: str) -> None:
        self.found.append((getattr(node, "lineno", 0), why))

    def _derives_from_third_party(self, node: ast.ClassDef) -> bool:
        for base in node.bases:
            root = base
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in self.imported:
                return True
        return False

    def _on_own_self(self, receiver: ast.AST) -> bool:
        """``self.x``/``cls.x`` inside a promptkit class that does not extend a third-party one."""
        return (isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")
                and bool(self.classes) and not self.classes[-1])  # fmt: skip

    def check_name(self, node: ast.AST, receiver: Optional[ast.AST], name: str) -> None:
        if name in INTERNALS and (receiver is None or not self._on_own_self(receiver)):
            self.report(node, f"urllib3/requests internal {name!r}")
        elif _private(name) and name not in self.own and name not in DOCUMENTED:
            self.report(node, f"private attribute {name!r} that promptkit does not define")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        third_party = self._derives_from_third_party(node)
        if third_party:
            for statement in node.body:  # overriding an internal of the parent class
                targets: List[ast.AST] = []
                if isinstance(statement, ast.Assign):
                    targets = list(statement.targets)
                elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
                    targets = [statement.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in INTERNALS:
                        self.report(statement, f"overrides urllib3/requests internal {target.id!r}")
                if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and statement.name in INTERNALS:
                    self.report(statement, f"overrides urllib3/requests internal {statement.name!r}")
        self.classes.append(third_party)
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.check_name(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (isinstance(func, ast.Name) and func.id in ATTRIBUTE_FUNCTIONS and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):  # fmt: skip
            self.check_name(node, node.args[0], node.args[1].value)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if not _own_module(node.module, node.level):
            if any(_private(part) for part in (node.module or "").split(".")):
                self.report(node, f"imports the private module {node.module!r}")
            for alias in node.names:
                if _private(alias.name) and alias.name not in DOCUMENTED:
                    self.report(node, f"imports the private name {alias.name!r} from {node.module!r}")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not alias.name.startswith("promptkit") and any(_private(p) for p in alias.name.split(".")):
                self.report(node, f"imports the private module {alias.name!r}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in PLAIN_INTERNALS and not (self.classes and isinstance(node.ctx, ast.Store)):
            self.report(node, f"urllib3/requests internal {node.id!r}")  # class-level stores: visit_ClassDef
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg in PLAIN_INTERNALS:
            self.report(node, f"urllib3/requests internal {node.arg!r}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and node.value in PLAIN_INTERNALS:
            self.report(node, f"urllib3/requests internal {node.value!r}")


def scan(sources: Mapping[str, str]) -> List[str]:
    """Findings as ``file:line: code  (why)``, for modules given as ``{file name: source}``."""
    trees: Dict[str, ast.AST] = {name: ast.parse(text, filename=name) for name, text in sources.items()}
    own = defined_names(trees.values())
    findings: List[str] = []
    for name, tree in trees.items():
        scanner = _Scanner(own, _third_party_bases(tree))
        scanner.visit(tree)
        lines = sources[name].splitlines()
        for line, why in sorted(set(scanner.found)):
            code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            findings.append(f"{name}:{line}: {code}  ({why})")
    return findings


def package_sources() -> Dict[str, str]:
    return {
        str(path.relative_to(PACKAGE.parent)): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


# --- the scanner itself ---------------------------------------------------------------------------


def test_scanner_finds_a_third_party_private_attribute() -> None:
    source = "def f(response):\n    return response.raw._original_response\n"
    found = scan({"m.py": source})
    assert found == ["m.py:2: return response.raw._original_response  "
                     "(private attribute '_original_response' that promptkit does not define)"]  # fmt: skip


def test_scanner_accepts_promptkit_own_private_names() -> None:
    source = (
        "from ._secrets import _helper\n"
        "import json as _json\n"
        "_LIMIT = 3\n"
        "class Thing:\n"
        "    __slots__ = ('_slot',)\n"
        "    _level = 1\n"
        "    def __init__(self):\n"
        "        self._x = 1\n"
        "        self._slot = _LIMIT\n"
        "    def _method(self):\n"
        "        return self._x + self._level + _json.loads('1') + _helper()\n"
        "def use(thing):\n"
        "    thing._method()\n"
        "    return thing._slot, getattr(thing, '_x'), Thing._level\n"
    )
    assert scan({"m.py": source}) == []


def test_scanner_defined_names_span_modules() -> None:
    """A name promptkit defines in one module may be used on its objects in another."""
    sources = {"a.py": "class A:\n    def __init__(self):\n        self._state = 1\n",
               "b.py": "def f(a):\n    return a._state\n"}  # fmt: skip
    assert scan(sources) == []
    assert scan({"b.py": sources["b.py"]}) != []


def test_scanner_finds_private_names_through_attribute_functions() -> None:
    source = "def f(raw):\n    getattr(raw, '_body', None)\n    setattr(raw, '_body', 1)\n    hasattr(raw, '_body')\n"
    found = scan({"m.py": source})
    assert [f.split(":")[1] for f in found] == ["2", "3", "4"]


def test_scanner_finds_named_internals_even_when_promptkit_defines_the_name() -> None:
    source = (
        "from urllib3.connectionpool import HTTPConnectionPool\n"
        "class Stream:\n"
        "    __slots__ = ('_pool', '_sock')\n"
        "    def __init__(self, raw):\n"
        "        self._pool = raw._pool\n"  # line 5: raw._pool is urllib3's
        "        self._sock = getattr(raw, '_sock', None)\n"  # line 6
        "class Pool(HTTPConnectionPool):\n"
        "    ConnectionCls = object\n"  # line 8
        "    def _put_conn(self, conn):\n"  # line 9
        "        return self._pool\n"  # line 10: self of a urllib3 subclass
        "def hook(adapter):\n"
        "    adapter.poolmanager.pool_classes_by_scheme = {}\n"  # line 12
    )
    lines = [int(f.split(":")[1]) for f in scan({"m.py": source})]
    assert lines == [5, 6, 8, 9, 10, 12]


def test_scanner_finds_private_imports_from_other_packages() -> None:
    source = "from requests._internal_utils import to_native_string\nfrom urllib3.util import _private\nimport http._x\n"
    assert [int(f.split(":")[1]) for f in scan({"m.py": source})] == [1, 2, 3]


def test_scanner_allows_documented_stdlib_underscore_names() -> None:
    source = "import sys\nfrom collections import namedtuple\ndef f(p):\n    return sys._getframe(1), p._replace(x=1)\n"
    assert scan({"m.py": source}) == []


# --- the package ----------------------------------------------------------------------------------


def test_package_uses_no_private_third_party_attribute() -> None:
    findings = scan(package_sources())
    for finding in findings:
        print(finding)
    assert not findings, "private third-party attributes in promptkit:\n" + "\n".join(findings)


def test_scan_covers_the_whole_package() -> None:
    """The scan reads every module, the transport among them (a scan of nothing passes vacuously)."""
    sources = package_sources()
    # The HTTP boundary, the turn and the reader are the modules that once reached into urllib3.
    assert {"promptkit/_transport.py", "promptkit/_turn.py", "promptkit/_reader.py"} <= set(sources)
    assert len(sources) >= 40
