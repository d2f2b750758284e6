#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a cycle.

A module is a file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`); it depends on every module a
`crate::`, `super::`, `self::` or child-module path in it names (in `use` trees and inline),
resolved to the longest path that is a file. Inline `#[cfg(test)] mod tests { .. }` blocks are
left out: tests may reach anywhere. `-v` prints the whole graph.
"""
import os, re, sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
USE = re.compile(r'^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);', re.M)
MOD = re.compile(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', re.M)
TESTS = re.compile(r'#\[cfg\(test\)\]\s*mod\s+\w+\s*\{')
PATH = re.compile(r'\b(?:crate|super|self)(?:::\w+)+')


def modules():
    found = {}
    for folder, _, names in os.walk(SRC):
        for name in names:
            if not name.endswith('.rs'):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, SRC)[:-3].split(os.sep)
            if parts[-1] == 'mod':
                parts = parts[:-1]
            if parts not in (['lib'], ['main']):
                found['::'.join(parts)] = path
    return found


def without_tests(text):
    """The text without its inline `#[cfg(test)] mod .. { .. }` blocks."""
    while (start := TESTS.search(text)):
        depth, end = 0, len(text)
        for i in range(start.end() - 1, len(text)):
            depth += (text[i] == '{') - (text[i] == '}')
            if depth == 0:
                end = i + 1
                break
        text = text[:start.start()] + text[end:]
    return text


def expand(tree, prefix=()):
    """`a::{b, c::{d}}` -> [a::b, a::c::d], as lists of segments."""
    tree = re.sub(r'\s+as\s+\w+', '', tree)
    tree = re.sub(r'\s+', '', tree)
    brace = tree.find('{')
    if brace < 0:
        return [list(prefix) + [s for s in tree.split('::') if s]]
    head = [s for s in tree[:brace].split('::') if s]
    inner, depth, item, items = tree[brace + 1:tree.rindex('}')], 0, '', []
    for ch in inner:
        depth += (ch == '{') - (ch == '}')
        if ch == ',' and depth == 0:
            items.append(item)
            item = ''
        else:
            item += ch
    items.append(item)
    return [p for it in items if it for p in expand(it, tuple(prefix) + tuple(head))]


def graph(found):
    edges = {}
    for name, path in found.items():
        text = re.sub(r'//.*', '', open(path, encoding='utf-8').read())
        text = without_tests(text)
        here = name.split('::')
        children = set(MOD.findall(text))
        paths = [p for tree in USE.findall(text) for p in expand(tree)]
        body = USE.sub('', text)
        paths += [p.split('::') for p in PATH.findall(body)]
        # Paths through a name a `use` brought in (`use crate::upstream::{self}`, then
        # `upstream::client::..`) or a child module (`mod rest;`, then `rest::handle`).
        local = {segs[-2] if segs[-1] == 'self' else segs[-1]: segs[:-1] if segs[-1] == 'self'
                 else segs for segs in paths if len(segs) > 1}
        for child in children:
            local[child] = ['self', child]
        for alias, target in local.items():
            inline = re.compile(r'(?<![:\w])' + alias + r'((?:::\w+)+)')
            paths += [target + p.split('::')[1:] for p in inline.findall(body)]
        targets = set()
        for segs in paths:
            if segs and segs[0] in children:
                segs = ['self'] + segs
            if not segs or segs[0] not in ('crate', 'super', 'self'):
                continue
            base = {'crate': [], 'super': here[:-1], 'self': here}[segs[0]]
            rest = segs[1:]
            while rest and rest[0] == 'super':
                base, rest = base[:-1], rest[1:]
            rest = [s for s in rest if s not in ('self', '*')]
            full = base + rest
            while full and '::'.join(full) not in found:
                full = full[:-1]
            if full and '::'.join(full) != name:
                targets.add('::'.join(full))
        edges[name] = targets
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    edges = graph(modules())
    if '-v' in sys.argv:
        for name in sorted(edges):
            print(f"{name} -> {', '.join(sorted(edges[name]))}")
    found = cycles(edges)
    for component in found:
        print('import cycle between:', ', '.join(component))
        for name in component:
            inside = sorted(t for t in edges[name] if t in component)
            print(f'  {name} -> {", ".join(inside)}')
    if found:
        sys.exit(1)
    print(f'src/: {len(edges)} modules, no import cycle')


main()
