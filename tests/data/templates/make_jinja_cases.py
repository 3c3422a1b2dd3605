#!/usr/bin/env python3
"""Regenerates jinja_cases.json: small templates rendered by Python Jinja2 3.1.x configured
like Hugging Face's apply_chat_template (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, the generation tag, HF's tojson, raise_exception and a
strftime_now fixed at 2024-07-26). tests/test_chat_jinja.cpp renders every case with
slm::chat and expects the same output, or an error where Jinja2 raised one.

    python3 tests/data/templates/make_jinja_cases.py   # needs jinja2 3.1.x
"""
import itertools
import json
import os
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        call = self.call_method("_render", [])
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime(2024, 7, 26).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


MSGS = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "yo"},
]
USERS = [
    {"name": "ann", "active": True, "age": 30, "tags": ["a", "b"]},
    {"name": "Bob", "active": False, "age": 10, "tags": []},
    {"name": "cid", "active": True, "age": 20},
]

CASES = {
    "literals": [
        ("{{ 1 }}|{{ -1 }}|{{ 1.5 }}|{{ 'a' }}|{{ \"b\" }}|{{ true }}|{{ True }}|{{ false }}|{{ none }}|{{ None }}", {}),
        ("{{ [1, 'a', none, true, 1.0] }}|{{ {'a': 1, 'b': [2, 3]} }}|{{ (1,) }}|{{ () }}|{{ (1, 2) }}|{{ [] }}|{{ {} }}", {}),
        ("{{ 'a\\nb\\tc\\\\d\\x41\\u00e9\\101' }}|{{ \"it's\" }}|{{ 'a' 'b' }}|{{ 'say \"hi\"' }}", {}),
        ("{{ 0x1F }}|{{ 0o17 }}|{{ 0b101 }}|{{ 1_000 }}|{{ 1.5e3 }}|{{ 1e3 }}|{{ 1E-3 }}", {}),
        ("{{ [1, 2,] }}{{ {'a': 1,} }}{{ (1, 2,) }}", {}),
        ("{{ {'a': 1, 'a': 2} }}{{ {1: 'a', 1.0: 'b', true: 'c'} }}", {}),
    ],
    "printing": [
        ("{{ x }}", {"x": [1, "a", None, True, 1.5, {"k": [1]}]}),
        ("{{ x }}", {"x": "it's"}),
        ("{{ [x] }}", {"x": "it's \"q\" \n\t\\ \u00e9 \u00a0 \x01 \u2028"}),
        ("{{ [x] }}", {"x": "it's"}),
        ("{{ 1e16 }}|{{ 1e15 }}|{{ 0.0001 }}|{{ 0.00001 }}|{{ 3.0 }}|{{ -0.0 }}|{{ 1/3 }}|{{ 0.1 + 0.2 }}", {}),
        ("{{ 123456789.123456789 }}|{{ 1.0e-10 }}|{{ 5e-324 }}|{{ 1.7976931348623157e308 }}|{{ 100.0 }}|{{ 12345678901234567890.0 }}", {}),
        ("{{ 1e308 * 10 }}|{{ -1e308 * 10 }}|{{ (1e308 * 10) - (1e308 * 10) }}", {}),
        ("{{ 'a' ~ 1 ~ none ~ true ~ [1, 'x'] ~ 2.0 }}", {}),
        ("{{ x }}", {"x": {"a": "\u2028\u00a0\u00ad\u200b", "b": -3, "c": 2.5}}),
        ("{{ undefined_var }}|{{ x.missing }}|{{ x['missing'] }}|{{ l[10] }}", {"x": {}, "l": []}),
        ("{{ 'a', 1 }}", {}),
        ("{% set ns = namespace(a=1) %}{{ ns }}", {}),
        ("{% for i in [1] %}{{ loop }}{% endfor %}", {}),
    ],
    "arithmetic": [
        ("{{ 1 + 2 }}|{{ 1 / 2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 2 ** 3 ** 2 }}", {}),
        ("{{ 1.5 + 1 }}|{{ 10 / 4 }}|{{ 10 / 5 }}|{{ 10.0 // 3 }}|{{ -10.5 % 3 }}|{{ 5 % -3 }}|{{ 2.0 ** 0.5 }}", {}),
        ("{{ 'ab' * 3 }}|{{ 3 * 'ab' }}|{{ [1] * 2 }}|{{ 'x' + 'y' }}|{{ [1] + [2] }}|{{ (1, 2) + (3,) }}|{{ 'a' * 0 }}|{{ 'a' * -1 }}", {}),
        ("{{ -2 ** 2 }}|{{ (-2) ** 2 }}|{{ -x|abs }}|{{ not true == false }}|{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 2 * 3 ~ 4 }}|{{ 1 ~ 2 + 3 }}", {"x": 5}),
        ("{{ true + 1 }}{{ true * 'ab' }}{{ 3 // true }}{{ -true }}", {}),
        ("{{ '%s and %d' % ('a', 3) }}|{{ '%05.2f' % 3.14159 }}|{{ '%(a)s' % {'a': 'b'} }}|{{ '%x %X %o %5d|%-5d|%+d' % (255, 255, 8, 42, 42, 3) }}|{{ '%s' % none }}|{{ '%r' % 'q' }}|{{ '%.2s' % 'abc' }}|{{ '%%' % () }}", {}),
        ("{{ '%e|%g|%G|%.3e' % (12345.678, 0.0001234, 1e20, 1.5) }}|{{ '%#x|%#o|%05d|% d' % (255, 8, -42, 7) }}", {}),
        ("{{ 1 / 0 }}", {}),
        ("{{ 1 // 0 }}", {}),
        ("{{ 1 % 0 }}", {}),
        ("{{ 1 + 'a' }}", {}),
        ("{{ 'a' + 1 }}", {}),
        ("{{ 1 + none }}", {}),
        ("{{ 1 + x }}", {}),
        ("{{ -'a' }}", {}),
        ("{{ 'a' * 1.5 }}", {}),
        ("{{ '%d' % 'x' }}", {}),
        ("{{ '%s %s' % ('a',) }}", {}),
        ("{{ '%s' % ('a', 'b') }}", {}),
    ],
    "comparison_logic": [
        ("{{ 'a' in 'abc' }}{{ 'z' not in 'abc' }}{{ 1 in [1] }}{{ 'k' in {'k': 1} }}{{ 1 < 2 < 3 }}{{ 3 > 2 > 5 }}{{ 1 == 1.0 }}{{ 'a' != 'b' }}", {}),
        ("{{ [1, 2] == [1, 2] }}{{ (1, 2) == [1, 2] }}{{ {'a': 1} == {'a': 1} }}{{ 'a' < 'b' }}{{ [1, 2] < [1, 3] }}{{ 'a' < 'B' }}{{ '\u00e9' > 'z' }}", {}),
        ("{{ [1] in [[1]] }}{{ none in [none] }}{{ 1.0 in [1] }}{{ {'a': 1} in [{'a': 1}] }}{{ x == y }}{{ x == none }}", {}),
        ("{{ 'yes' if x else 'no' }}|{{ 'yes' if y else 'no' }}|{{ 'a' if false }}|{{ x and 'b' }}|{{ y or 'c' }}|{{ not x }}|{{ 1 if true else 2 if false else 3 }}", {"x": 1, "y": 0}),
        ("{{ not none }}{{ not [] }}{{ not [0] }}{{ not '' }}{{ not 0.0 }}{{ not {} }}{{ [] or 'x' }}{{ 'a' and 'b' }}{{ 0 and 1 }}{{ none or none }}", {}),
        ("{% if [] %}t{% elif {} %}u{% elif 'x' %}v{% else %}w{% endif %}|{% if 1, 2 %}tuple{% endif %}", {}),
        ("{{ 1 < 'a' }}", {}),
        ("{{ 1 in 'abc' }}", {}),
        ("{{ 1 in 5 }}", {}),
        ("{{ x < 1 }}", {}),
    ],
    "variables_scoping": [
        ("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c = (3, 4) %}{{ c[0] }}", {}),
        ("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}", {}),
        ("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", {}),
        ("{% set x = 0 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}|{{ x }}", {}),
        ("{% for i in [1, 2] %}{% if i == 2 %}{{ x }}{% endif %}{% set x = i %}{% endfor %}", {}),
        ("{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}{{ a }}", {}),
        ("{% set x = 1 %}{% with x = x + 1, y = x %}{{ x }}{{ y }}{% endwith %}{{ x }}", {}),
        ("{% set x %}hello {{ 1 + 1 }}{% endset %}[{{ x }}]", {}),
        ("{% set x | upper %}hello{% endset %}[{{ x }}]", {}),
        ("{% set x | trim | upper %}  a b  {% endset %}[{{ x }}]", {}),
        ("{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}", {}),
        ("{% for a, b in [[1, 2], [3]] %}{{ a }}{{ b }}{% endfor %}", {}),
        ("{% set a, b = [1, 2, 3] %}", {}),
        ("{% set x = 5 %}{% set x.y = 1 %}", {}),
        ("{% set bos_token = 'B' %}{{ bos_token }}", {"bos_token": "A"}),
    ],
    "namespace": [
        ("{% set ns = namespace(a=1, b='x') %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}{{ ns.b }}", {}),
        ("{% set ns = namespace() %}{% set ns.found = false %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}", {"messages": MSGS}),
        ("{% set ns = namespace({'a': 1}) %}{{ ns.a }}{{ ns['a'] }}{{ ns.b }}|{{ ns.b is defined }}", {}),
        ("{% set ns = namespace(d={}) %}{{ ns.d }}{% set ns.d = ns.d | list %}{{ ns.d }}", {}),
        ("{% set ns = namespace(items=[]) %}{% for i in [1, 2] %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.items }}", {}),
        ("{{ ns.x }}{% set ns = namespace() %}{% set ns.x = 5 %}{{ ns.x }}", {}),
    ],
    "macros": [
        ("{% macro m(a, b=2, c='z') %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, 3) }}|{{ m(1, c=5) }}|{{ m(a=9) }}|{{ m() }}", {}),
        ("{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, x=3) }}", {}),
        ("{% macro m(a, b=a ~ '!') %}{{ b }}{% endmacro %}{{ m('hi') }}", {}),
        ("{% macro wrap(t) %}<{{ t }}>{{ caller() }}</{{ t }}>{% endmacro %}{% call wrap('b') %}inner{% endcall %}", {}),
        ("{% macro list(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}{% call(x) list([1, 2]) %}[{{ x }}]{% endcall %}", {}),
        ("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}{{ fact(5) }}", {}),
        ("{% macro m() %}{% set y = 3 %}{{ y }}{% endmacro %}{{ m() }}{{ y }}", {}),
        ("{% macro m() %}{{ y }}{% endmacro %}{% set y = 3 %}{{ m() }}", {}),
        ("{% macro outer() %}{% macro inner() %}in{% endmacro %}{{ inner() }}-{{ caller() }}{% endmacro %}{% call outer() %}c{% endcall %}", {}),
        ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", {}),
        ("{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}", {}),
        ("{% macro m(a) %}{{ caller() }}{% endmacro %}{{ m(1) }}", {}),
        ("{% macro m(a) %}{{ a }}{% endmacro %}{% call m(1) %}x{% endcall %}", {}),
        ("{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m() }}|{{ m(none) }}", {}),
        ("{% macro m() %}x{% endmacro %}{{ m is callable }}{{ caller is defined }}", {}),
        ("{% macro render(v) %}{% if v is mapping %}{{ '{' }}{% for k, x in v.items() %}{{ k }}:{{ render(x) }};{% endfor %}{{ '}' }}{% elif v is string %}'{{ v }}'{% else %}{{ v }}{% endif %}{% endmacro %}{{ render(d) }}", {"d": {"a": {"b": [1, 2]}, "c": "s"}}),
    ],
    "loops": [
        ("{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.depth }}{{ loop.depth0 }}|{% endfor %}", {}),
        ("{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }}|{% endfor %}", {}),
        ("{% for x in [] %}a{% else %}empty{% endfor %}|{% for i in [1, 2] %}{{ i }}{% else %}none{% endfor %}", {}),
        ("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.index }}{{ loop.length }}{% endfor %}", {}),
        ("{% for i in [1, 2] if i > 5 %}{{ i }}{% else %}none{% endfor %}", {}),
        ("{% for i in [1, 2, 3] if i != 2 %}{{ loop.index }}/{{ loop.length }}{{ loop.last }} {% endfor %}", {}),
        ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k in d %}{{ k }}{% endfor %}", {"d": {"b": 1, "a": 2}}),
        ("{% for c in 'h\u00e9llo' %}[{{ c }}]{% endfor %}", {}),
        ("{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}|{% for x in [1, 2, 3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
        ("{% for i in range(3) %}{{ i }}{% if i == 1 %}{% break %}{% endif %}{% else %}E{% endfor %}", {}),
        ("{% for i in [1, 2] %}{% for j in [3] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}", {}),
        ("{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{% endfor %}|{% for i in [1, 1, 2, 2, 3] %}{% if loop.changed(i) %}{{ i }}{% endif %}{% endfor %}", {}),
        ("{% for item in tree recursive %}[{{ item.name }}{% if item.children %}{{ loop(item.children) }}{% endif %}:{{ loop.depth }}]{% endfor %}", {"tree": [{"name": "a", "children": [{"name": "b", "children": []}]}, {"name": "c"}]}),
        ("{% for m in messages %}{{ loop.index0 }}{{ m.role[0] }}{% if not loop.last %},{% endif %}{% endfor %}", {"messages": MSGS}),
        ("{% for x in undefined_thing %}x{% endfor %}ok", {}),
        ("{% for x in 5 %}{% endfor %}", {}),
        ("{% for x in none %}{% endfor %}", {}),
        ("{{ loop }}", {}),
        ("{% for i in [1] %}{{ loop(1) }}{% endfor %}", {}),
    ],
    "whitespace": [
        ("a\n  {% if true %}\n  b\n  {% endif %}\nc", {}),
        ("a  {%- if true -%}  b  {%- endif -%}  c", {}),
        ("a\n{{- 'b' -}}\nc\n{#- comment -#}\nd", {}),
        ("  {# c #}\nx\n  {%+ if true %}y{% endif %}\n", {}),
        ("  {% for i in [1, 2] %}\n    {{ i }}\n  {% endfor %}\n", {}),
        ("<ul>\n{% for i in [1, 2] %}\n  <li>{{ i }}</li>\n{% endfor %}\n</ul>\n", {}),
        ("{% if true %}\n\n{% endif %}\n\nx\n", {}),
        ("x\n\n", {}),
        ("x\r\ny\rz\n", {}),
        ("{% raw %}{{ x }}{% endraw %}", {}),
        ("{% raw %}  {{ a }} {% endraw %}\n  {% raw -%}  b  {%- endraw %}", {}),
        ("a{% raw %}\n{% if %}{% endraw %}b", {}),
        ("\u3000{% if true %}x{% endif %}", {}),
        ("{{ 'a' -}}\u3000\u2028 b", {}),
        ("{# multi\nline\ncomment #}\nafter", {}),
        ("{% if true %}  {{ 'x' }}  {% endif %}", {}),
        ("{%- if true %}\n  x\n{%- endif %}\n", {}),
        ("{% if true +%}\nx{% endif +%}\n", {}),
        ("  {{ 'var' }}\n  {%- set x = 1 %}\n", {}),
    ],
    "slicing_indexing": [
        ("{{ [1, 2, 3, 4, 5][1:] }}|{{ [1, 2, 3, 4, 5][::-1] }}|{{ [1, 2, 3, 4, 5][1:4:2] }}|{{ 'hello'[1:3] }}|{{ 'hello'[::-1] }}|{{ [1, 2, 3][-1] }}|{{ 'h\u00e9llo'[1] }}", {}),
        ("{{ 'abc'[1:] }}{{ 'abc'[:-1] }}{{ 'abc'[-5:10] }}{{ [1, 2, 3][::2] }}{{ [1, 2, 3][3:1:-1] }}{{ (1, 2, 3)[1:] }}{{ [1, 2, 3][5:] }}", {}),
        ("{{ messages[1:] | length }}|{{ messages[-1].content }}|{{ messages[0]['role'] }}|{{ (messages | last).role }}", {"messages": MSGS}),
        ("{{ a.b.c }}|{{ a['b']['c'] }}|{{ a.b['c'] }}", {"a": {"b": {"c": 1}}}),
        ("{{ a[0].b }}{{ a.0.b }}", {"a": [{"b": 2}]}),
        ("{{ x['items'] }}|{{ x.get('items') }}", {"x": {"items": 1}}),
        ("{{ 'abc'[::0] }}", {}),
        ("{{ x.y }}|{{ x[0] }}|{{ none.x is defined }}", {"x": None}),
        ("{{ foo.bar }}", {}),
        ("{{ d.missing.x }}", {"d": {}}),
        ("{{ foo[0] }}", {}),
        ("{{ foo() }}", {}),
    ],
    "string_methods": [
        ("{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a'.lstrip() }}|{{ 'a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a b c'.rsplit(' ', 1) }}", {}),
        ("{{ 'abc'.startswith('a') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'abc'.startswith('b', 1) }}|{{ 'Hello World'.upper() }}|{{ 'Hello'.lower() }}|{{ 'hello world'.title() }}|{{ \"they're 1st\".title() }}", {}),
        ("{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'hello'.capitalize() }}|{{ 'abcabc'.find('c') }}|{{ 'abcabc'.rfind('c') }}|{{ 'abc'.find('z') }}|{{ 'abcabc'.count('b') }}|{{ ','.join(['a', 'b']) }}|{{ 'aaa'.replace('', '-') }}", {}),
        ("{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ 'x'.center(5, '*') }}|{{ 'x'.ljust(3) }}|{{ 'x'.rjust(3) }}|{{ '42'.zfill(5) }}|{{ 'pre-x'.removeprefix('pre-') }}|{{ 'a=b=c'.partition('=') }}|{{ 'a=b=c'.rpartition('=') }}", {}),
        ("{{ '123'.isdigit() }}{{ 'abc'.isalpha() }}{{ 'a1'.isalnum() }}{{ ' '.isspace() }}{{ 'ABC'.isupper() }}{{ 'abc'.islower() }}{{ ''.isdigit() }}{{ 'Hello'.swapcase() }}", {}),
        ("{{ '\u00c9t\u00e9'.upper() }}|{{ '\u00c9T\u00c9'.lower() }}|{{ 'stra\u00dfe'.upper() }}|{{ '\u041f\u0440\u0438\u0432\u0435\u0442'.lower() }}|{{ '\u03a3\u039f\u03a3'.lower() }}", {}),
        ("{{ '\u3000 x\u00a0\\n'.strip() }}|{{ ' \u3000a b'.split() }}", {}),
        ("{% set content = 'think</think>answer' %}{{ content.split('</think>')[-1].lstrip('\\n') }}|{{ content.split('</think>', 1)[0] }}", {}),
        ("{{ ''.join(['a', 1]) }}", {}),
        ("{{ 'abc'.split('') }}", {}),
        ("{{ 'abc'.index('z') }}", {}),
        ("{{ 'x'.nonexistent }}|{{ 'x'.nonexistent is defined }}", {}),
        ("{{ 'x'.nonexistent() }}", {}),
    ],
    "dict_list_methods": [
        ("{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 5) }}|{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.items() | list }}|{{ d['a'] }}|{{ d.a }}", {"d": {"a": 1, "b": 2}}),
        ("{{ l.count(1) }}|{{ l.index(2) }}|{{ (1, 2).index(2) }}|{{ l.copy() }}", {"l": [1, 2, 1]}),
        ("{{ l.append }}|{{ l.pop is defined }}|{{ d.update is defined }}", {"l": [], "d": {}}),
        ("{{ l.append(1) }}", {"l": []}),
        ("{{ d.update({}) }}", {"d": {}}),
        ("{{ d.pop('a') }}", {"d": {"a": 1}}),
    ],
    "filters": [
        ("{{ '  x  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ [1, 2, 3] | length }}|{{ 'abc' | count }}|{{ 'h\u00e9llo' | length }}|{{ {'a': 1} | length }}|{{ undefined_x | length }}", {}),
        ("{{ x | tojson }}", {"x": {"a": [1, 2.5, None, True, "\u00e9\n\"<>&'"], "b": {}, "c": []}}),
        ("{{ x | tojson(indent=2) }}", {"x": {"a": [1, 2], "b": {"c": []}, "d": {}}}),
        ("{{ x | tojson(indent=4) }}", {"x": [{"type": "function", "function": {"name": "f", "parameters": {"properties": {}}}}]}),
        ("{{ x | tojson(indent=2, sort_keys=true) }}|{{ x | tojson(separators=(',', ':')) }}|{{ x | tojson(ensure_ascii=true) }}|{{ x | tojson(indent='\\t') }}", {"x": {"b": "\u00e9\U0001F600", "a": 1}}),
        ("{{ '\\u00e9' | tojson }}{{ '\\x7f\\x1f' | tojson }}{{ 1.0 | tojson }}{{ (1, 2) | tojson }}{{ none | tojson }}", {}),
        ("{{ x | tojson }}", {"x": {"key with \"quote\"": "line\nbreak\ttab\\", "u": "\u2028"}}),
        ("{{ d | items | list }}|{{ 'aBc' | lower }}|{{ 'aBc' | upper }}|{{ 'hello world' | capitalize }}|{{ 'a-b' | replace('-', '+') }}|{{ 'aaa' | replace('a', 'b', 1) }}|{{ [1, 2, 3] | join(', ') }}|{{ users | join(',', attribute='name') }}", {"d": {"x": 1}, "users": USERS}),
        ("{{ none | default('d') }}|{{ undef | default('d') }}|{{ '' | default('d', true) }}|{{ undef | d('x') }}|{{ 0 | d(5, boolean=true) }}", {}),
        ("{{ [3, 1, 2] | first }}|{{ [3, 1, 2] | last }}|{{ [] | first }}|{{ 'abc' | first }}|{{ 'abc' | last }}|{{ {'k': 1} | first }}", {}),
        ("{{ users | selectattr('active') | map(attribute='name') | join(',') }}|{{ users | rejectattr('active') | map(attribute='name') | list }}|{{ users | selectattr('age', 'gt', 15) | list | length }}|{{ users | selectattr('name', 'equalto', 'cid') | map(attribute='age') | first }}", {"users": USERS}),
        ("{{ users | map(attribute='tags') | list }}|{{ users | map(attribute='tags', default=['-']) | list }}|{{ users | map(attribute='tags.0') | list }}", {"users": USERS[:2]}),
        ("{{ ['a', 'b'] | map('upper') | list }}|{{ ['a', 'b'] | map('replace', 'a', 'z') | list }}|{{ [1, 2, 3] | select('odd') | list }}|{{ [1, 2, 3] | reject('odd') | list }}|{{ [0, 1, '', 'a'] | select | list }}|{{ [1, 2, 3] | select('in', [2, 3]) | list }}", {}),
        ("{{ '3' | int + 1 }}|{{ '3.7' | int }}|{{ 'x' | int }}|{{ 'x' | int(7) }}|{{ ' 12 ' | int }}|{{ '0x1A' | int(base=16) }}|{{ 3.9 | int }}|{{ none | int }}|{{ true | int }}", {}),
        ("{{ '2.5' | float }}|{{ 'x' | float }}|{{ 3 | float }}|{{ '1e3' | float }}|{{ -3 | abs }}|{{ -2.5 | abs }}", {}),
        ("{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ 3.5 | round }}|{{ 7 | round }}|{{ 2.1 | round(method='ceil') }}|{{ 2.9 | round(method='floor') }}|{{ 2.675 | round(2) }}|{{ 15 | round(-1) }}", {}),
        ("{{ [1, 2, 2, 'a', 'A'] | unique | list }}|{{ ['a', 'A'] | unique(case_sensitive=true) | list }}|{{ users | unique(attribute='active') | map(attribute='name') | list }}", {"users": USERS}),
        ("{{ 'x' | safe }}|{{ '<a href=\"x\">' | e }}|{{ '<b>' | escape }}|{{ '<b>' | safe | escape }}|{{ '<b>' | forceescape }}|{{ 1 | e }}", {}),
        ("{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'a'] | sort }}|{{ ['b', 'A', 'a'] | sort(case_sensitive=true) }}|{{ [3, 1, 2] | sort(reverse=true) }}|{{ users | sort(attribute='age') | map(attribute='name') | list }}|{{ users | sort(attribute='name') | map(attribute='name') | join }}", {"users": USERS}),
        ("{{ [1, 'a'] | string }}{{ 1 | string }}{{ none | string }}|{{ 'abc' | list }}{{ {'a': 1} | list }}{{ undefined_x | list }}", {}),
        ("{{ 'a b c' | wordcount }}|{{ 'Hello World' | title }}|{{ 'hello-world foo(bar) x_y' | title }}|{{ 'a\\nb' | indent(2) }}|{{ 'a\\nb\\n\\nc' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}|{{ 'a\\nb' | indent('> ') }}", {}),
        ("{{ [1, 2, 3, 4, 5] | batch(2) | list }}|{{ [1, 2, 3, 4, 5] | batch(2, 'x') | list }}|{{ [1, 2, 3, 4, 5] | slice(2) | list }}|{{ [1, 2, 3] | sum }}|{{ users | sum(attribute='age') }}|{{ [[1], [2]] | sum(start=[]) }}", {"users": USERS}),
        ("{{ [1, 2, 3] | max }}|{{ [1, 2, 3] | min }}|{{ ['b', 'A'] | max }}|{{ ['b', 'A'] | max(case_sensitive=true) }}|{{ users | max(attribute='age') }}|{{ [] | max }}", {"users": USERS}),
        ("{{ d | dictsort }}|{{ d | dictsort(by='value') }}|{{ d | dictsort(reverse=true) }}|{{ d | dictsort(true) }}", {"d": {"b": 1, "a": 3, "C": 2}}),
        ("{{ 'abc' | reverse }}|{{ [1, 2, 3] | reverse | list }}|{{ 'a' | center(5) }}|{{ 'hello world foo' | truncate(9) }}|{{ 'hello world' | truncate(5, true) }}|{{ 'short' | truncate(10) }}", {}),
        ("{{ users | groupby('active') | list }}", {"users": [{"n": 1, "active": True}, {"n": 2, "active": False}, {"n": 3, "active": True}]}),
        ("{% for k, items in users | groupby('g') %}{{ k }}:{{ items | map(attribute='n') | join }};{% endfor %}", {"users": [{"n": 1, "g": "b"}, {"n": 2, "g": "a"}, {"n": 3, "g": "B"}]}),
        ("{{ messages | first | attr('role') }}|{{ 'x' | attr('upper') is callable }}", {"messages": MSGS}),
        ("{{ '%s-%s' | format('a', 1) }}|{{ '%(x)s' | format(x=2) }}|{{ 1000 | filesizeformat }}|{{ 1048576 | filesizeformat(true) }}|{{ 1 | filesizeformat }}", {}),
        ("{{ '<p>a <b>b</b></p> &amp; c' | striptags }}", {}),
        ("{% filter upper %}hello {{ 'x' }}{% endfilter %}|{% filter replace('a', 'b') | upper %}aa{% endfilter %}", {}),
        ("{{ x | tojson }}", {}),
        ("{{ 'x' | items | list }}", {}),
        ("{{ x | nonexist }}", {}),
        ("{% if x %}{{ x | nonexist }}{% endif %}ok", {}),
        ("{% if true %}{{ x | nonexist }}{% endif %}", {}),
        ("{{ [1] | map('nonexist') | list }}", {}),
        ("{{ 'x' | round }}", {}),
        ("{{ 'a' | abs }}", {}),
    ],
    "tests": [
        ("{{ 1 is number }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ [] is sequence }}{{ true is boolean }}{{ 1 is integer }}{{ 1.0 is integer }}{{ 1.0 is float }}{{ true is number }}{{ true is integer }}", {}),
        ("{{ 3 is odd }}{{ 3 is even }}{{ 1 is eq 1 }}{{ 1 is equalto 2 }}{{ 1 is ne 2 }}{{ 1 is in [1, 2] }}{{ none is none }}{{ true is true }}{{ false is false }}{{ 0 is false }}{{ 6 is divisibleby 3 }}{{ 7 is divisibleby(3) }}", {}),
        ("{{ 'x' is lower }}{{ 'X' is upper }}{{ '1' is lower }}{{ none is string }}{{ 'f' is callable }}{{ range is callable }}{{ x is sameas none }}{{ 'upper' is filter }}{{ 'odd' is test }}{{ 'nope' is filter }}{{ x is sameas x }}", {"x": None}),
        ("{{ 1 is gt 0 }}{{ 1 is lt 0 }}{{ 1 is ge 1 }}{{ 1 is le 0 }}{{ 1 is greaterthan 0 }}{{ 1 is lessthan 2 }}{{ 1 is == 1 }}{{ 2 is != 1 }}{{ 1 is > 0 }}{{ 1 is < 0 }}{{ 1 is >= 2 }}{{ 1 is <= 1 }}", {}),
        ("{{ x is defined and x }}{{ x is not defined }}{{ y is none }}{{ y is not none }}{{ z is undefined }}", {"y": None}),
        ("{{ m.content is string }}{{ m.content is mapping }}{{ m.content is iterable }}{{ m.content is sequence }}{{ m is mapping }}{{ m.tool_calls is defined }}", {"m": {"role": "user", "content": "hi"}}),
        ("{{ undefined_x is iterable }}{{ undefined_x is sequence }}{{ undefined_x is none }}{{ 5 is iterable }}{{ none is iterable }}{{ '' is escaped }}{{ '' | e is escaped }}", {}),
        ("{% set ns = namespace() %}{{ ns is mapping }}{{ ns is iterable }}{{ ns is callable }}{% macro m() %}{% endmacro %}{{ m is callable }}{{ joiner() is callable }}", {}),
        ("{% if x is nonexist %}{% endif %}", {}),
        ("{{ x if x is nonexist else 1 }}", {}),
        ("{{ 'a' is odd }}", {}),
    ],
    "globals": [
        ("{{ range(5) | list }}|{{ range(1, 10, 3) | list }}|{{ range(5, 0, -2) | list }}|{{ range(0) | list }}|{{ dict(a=1, b=2) }}|{{ dict({'x': 1}, y=2) }}", {}),
        ("{% set j = joiner(', ') %}{% for x in [1, 2, 3] %}{{ j() }}{{ x }}{% endfor %}", {}),
        ("{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }}{{ c.next() }}{{ c.current }}{{ c.reset() }}{{ c.current }}", {}),
        ("{{ raise_exception('boom') }}", {}),
        ("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}", {"messages": MSGS}),
        ("{{ strftime_now('%Y-%m-%d %A %B %j %d %b %-d %H:%M') }}", {}),
        ("{{ range(200000) | length }}", {}),
        ("{{ range(1, 2, 0) }}", {}),
    ],
    "syntax_errors": [
        ("a\nb\n{% foo %}\n", {}),
        ("a\n{% if x %}\nb\n", {}),
        ("a\n\n{{ x +* 2 }}", {}),
        ("{% for x in y %}\n{% endif %}", {}),
        ("a\n{% for %}", {}),
        ("a\n{{ }}", {}),
        ("a\n{{ (1 }}", {}),
        ("{% macro m(a=1, b) %}{% endmacro %}", {}),
        ("{{ f(a=1, 2) }}", {}),
        ("{% call m %}{% endcall %}", {}),
        ("{{ x is defined is defined }}", {}),
        ("{% endfor %}", {}),
        ("{% if x %}{% else %}{% else %}{% endif %}", {}),
        ("{{ 1. }}", {}),
        ("{{ 'a' | }}", {}),
        ("{{ @ }}", {}),
        ("{{ x", {}),
        ("{{ 'unterminated }}", {}),
        ("{# unterminated", {}),
        ("{% set 1 = 2 %}", {}),
        ("{% set true = 2 %}", {}),
        ("{% for x in [1] %}{% endfor x %}", {}),
    ],
    "generation_print": [
        ("{% generation %}gen {{ 1 }}{% endgeneration %}", {}),
        ("{% print 'a', 1 %}", {}),
        ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}", {"messages": MSGS}),
    ],
}

WS_PARTS = ["a \n ", "\n", "  ", " \t\n\n  ", ""]
WS_TAGS = ["{% if true %}", "{%- if true %}", "{% if true -%}", "{%+ if true %}", "{% if true +%}",
           "{{ 'x' }}", "{{- 'x' }}", "{{ 'x' -}}", "{# c #}", "{#- c #}", "{# c -#}",
           "{%- if true -%}"]


def whitespace_matrix():
    out = []
    for p1, tag, p2 in itertools.product(WS_PARTS, WS_TAGS, WS_PARTS):
        t = p1 + tag + p2
        if "if true" in tag:
            t += "{% endif %}" + p1
        out.append((t, {}))
    return out


def main():
    env = make_env()
    cases = []
    groups = dict(CASES)
    groups["whitespace_matrix"] = whitespace_matrix()
    for group, items in groups.items():
        for i, (template, context) in enumerate(items):
            case = {"name": f"{group}/{i}", "template": template, "context": context}
            try:
                case["output"] = env.from_string(template).render(**context)
            except jinja2.TemplateError as e:
                case["error"] = str(e) if e.message is None else e.message
                case["error_type"] = type(e).__name__
            except Exception as e:  # TypeError, ZeroDivisionError, ...
                case["error"] = str(e)
                case["error_type"] = type(e).__name__
            cases.append(case)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jinja_cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": "make_jinja_cases.py, jinja2 " + jinja2.__version__,
                   "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
