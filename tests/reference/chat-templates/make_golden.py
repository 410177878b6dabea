"""Golden renderings of chat templates for JinjaTemplateTests, made by the real jinja2.

The environment is the one Hugging Face transformers compiles chat templates with
(transformers/utils/chat_template_utils.py, _compile_jinja_template):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[AssistantTracker, jinja2.ext.loopcontrols]) with the globals raise_exception and
strftime_now and transformers' own tojson filter (json.dumps with ensure_ascii=False, unsorted keys).
AssistantTracker's {% generation %} block is reproduced as the plain call block it is when no
assistant mask is asked for. strftime_now reads a fixed clock (NOW) so the golden file is
reproducible; the C# tests give the interpreter the same clock.

templates/*.jinja are the chat templates exactly as the model repositories publish them (the
`chat_template` string of tokenizer_config.json, JSON-decoded). The published templates are
rendered the way transformers' apply_chat_template(add_generation_prompt=True) renders them:
messages, tools=None, documents=None, add_generation_prompt and the tokenizer's special tokens.

Run: python3 make_golden.py  (jinja2 3.1.6)  → golden.json
"""

import datetime
import json
import os
import traceback

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = datetime.datetime(2024, 7, 26, 13, 5, 9)


class Generation(jinja2.ext.Extension):
    """transformers' AssistantTracker without the tracking: {% generation %}body{% endgeneration %}."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return NOW.strftime(format)


def hf_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENVIRONMENTS = {
    "hf": hf_environment(),
    # Jinja's defaults (no trim_blocks, no lstrip_blocks), to check the lexer's whitespace rules on their own.
    "plain": ImmutableSandboxedEnvironment(extensions=[jinja2.ext.loopcontrols]),
}

# --- the published templates ---------------------------------------------------------------------

PUBLISHED = {
    "llama-2-chat": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "llama-3-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama-3.1-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "tinyllama-1.1b-chat": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
    "mistral-7b-instruct-v0.2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "qwen2.5-instruct": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
}

# Published as the "tool_use" entry of a list-form chat_template; rendered only with tools (it iterates them).
TOOL_USE = {
    "hermes-3-llama-3.1-tool-use": {"bos_token": "<|begin_of_text|>", "eos_token": "<|im_end|>", "pad_token": "<|end_of_text|>"},
}

UNICODE = 'Grüße, 世界 👋 — "double" and \'single\' quotes, a \\ backslash, {{ braces }} and a <s> tag'

CONVERSATIONS = {
    "system-user": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "user-only": [{"role": "user", "content": "Hello!"}],
    "multi-turn": [
        {"role": "system", "content": "  Answer in one word.  "},
        {"role": "user", "content": "Colour of the sky?"},
        {"role": "assistant", "content": " Blue. "},
        {"role": "user", "content": "And grass?"},
    ],
    "roles-not-alternating": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ],
    "unicode-and-quotes": [{"role": "user", "content": UNICODE}],
    "empty-content": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
    ],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place — in °C.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}

TOOL_CONVERSATION = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2, "metric": True, "ratio": 0.5, "none": None}}}]},
    {"role": "tool", "content": "21 °C"},
]


def case(template, name, messages, **variables):
    """A case of a published template, with the variables transformers passes, then the case's own."""
    tokens = PUBLISHED.get(template) or TOOL_USE[template]
    return {
        "name": f"{template}/{name}",
        "template": template,
        "variables": {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": True, **tokens, **variables},
    }


def published_cases():
    for template in PUBLISHED:
        for name, messages in CONVERSATIONS.items():
            yield case(template, name, messages)
    for template in ("llama-3.1-instruct", "qwen2.5-instruct"):
        yield case(template, "tools", TOOL_CONVERSATION, tools=[WEATHER_TOOL])
    yield case("llama-3.1-instruct", "tools-in-system-message-builtin-date", TOOL_CONVERSATION[:2], tools=[WEATHER_TOOL], tools_in_user_message=False,
               builtin_tools=["brave_search", "code_interpreter"], date_string="1 Jan 2025", add_generation_prompt=False)
    yield case("llama-3.1-instruct", "builtin-tool-call", [{"role": "user", "content": "Search"}, {"role": "assistant", "tool_calls": [
        {"function": {"name": "brave_search", "arguments": {"query": "jinja", "lang": "en"}}}]}], builtin_tools=["brave_search"], add_generation_prompt=False)
    yield case("llama-3.1-instruct", "tools-without-user-message", [{"role": "system", "content": "s"}], tools=[WEATHER_TOOL])
    yield case("mistral-7b-instruct-v0.2", "unknown-role", [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}])

    rich_tool = {"type": "function", "function": {
        "name": "search", "description": "Search the web.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string", "description": "  What to look for  "},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Filters"},
            "limits": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "Per-site caps"},
            "mode": {"type": ["string", "integer"], "description": "fast or 1"},
            "extra": {"description": "Anything"}}, "required": ["query"]},
        "return": {"type": "array", "description": "The hits"}}}
    no_args_tool = {"type": "function", "function": {"name": "now", "description": "The time.", "parameters": {"type": "object", "properties": {}}}}
    yield case("hermes-3-llama-3.1-tool-use", "tools-and-responses", TOOL_CONVERSATION[:3] + [
        {"role": "assistant", "tool_calls": [{"function": {"name": "now", "arguments": "{}"}}, {"name": "search", "arguments": {"query": "x"}}]},
        {"role": "tool", "content": "12:00"}, {"role": "tool", "content": "hits"}, {"role": "user", "content": "thanks"}],
        tools=[rich_tool, no_args_tool, WEATHER_TOOL])
    yield case("hermes-3-llama-3.1-tool-use", "without-tools", CONVERSATIONS["user-only"])


# --- focused cases: one language feature each ---------------------------------------------------

# (name, source, variables[, environment])
FEATURES = [
    # whitespace control and the trim_blocks / lstrip_blocks environment
    ("ws/dash-strips-both-sides", "a  \n  {{- 'x' -}}  \n  b\n  {%- if true -%}  c  {%- endif -%}\n d", {}),
    ("ws/trim-and-lstrip-blocks", "<ul>\n    {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n    {% endfor %}\n</ul>\n", {}),
    ("ws/trim-and-lstrip-blocks-plain", "<ul>\n    {% for i in [1, 2] %}\n    <li>{{ i }}</li>\n    {% endfor %}\n</ul>\n", {}, "plain"),
    ("ws/plus-keeps-indentation", "x\n    {%+ if true %}y{% endif %}\n  {% if true +%}\nz{% endif %}", {}),
    ("ws/variable-tag-keeps-newline", "{{ 'a' }}\n{{ 'b' }}\n", {}),
    ("ws/comments", "a\n  {# note #}\nb {#- tight -#} c\n{# last #}", {}),
    ("ws/comments-plain", "a\n  {# note #}\nb {#- tight -#} c\n{# last #}", {}, "plain"),
    ("ws/lstrip-not-after-text", "text {% if true %}x{% endif %}\n\t {% if true %}y{% endif %}", {}),
    ("ws/trailing-newline-dropped", "line\n\n", {}),
    ("ws/crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc", {}),
    ("ws/raw", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}!", {}),
    ("ws/unicode-whitespace-dash", "a\u00a0\u3000{{- 'b' -}}\u2003c", {}),
    # literals and output
    ("lit/strings", "{{ 'single' }} {{ \"double\" }} {{ 'it\\'s' }} {{ \"tab\\tnew\\nline \\u00e9 \\x41 \\\\ \\q\" }} {{ 'ad' 'jacent' }}", {}),
    ("lit/numbers", "{{ 42 }} {{ 1_000 }} {{ 0x1F }} {{ 3.25 }} {{ 1e3 }} {{ 2.5e-3 }} {{ -7 }} {{ 10 / 4 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 0.5 }} {{ 7.5 // 2 }} {{ 7.5 % 2 }}", {}),
    ("lit/float-output", "{{ 0.1 + 0.2 }} {{ 1 / 3 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-4 }} {{ 1e-5 }} {{ 123456789.125 }} {{ 3.0 }} {{ -0.0 }} {{ 1e300 * 1e10 }} {{ 100.0 * 3 }} {{ 2.5e-310 }}", {}),
    ("lit/constants", "{{ true }} {{ True }} {{ false }} {{ False }} {{ none }} {{ None }} [{{ undefined_name }}]", {}),
    ("lit/containers", "{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }} {{ (1,) }} {{ (1, 'b') }} {{ () }} {{ {'a': 1, 2: 'b', none: 3} }} {{ [] }} {{ {} }}", {}),
    ("lit/repr-quotes", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'line\\nbreak', 'tab\\t', 'é 世 👋', '\\x07', 'back\\\\slash'] }}", {}),
    ("lit/tuple-output", "{{ 1, 'a' }}", {}),
    ("lit/trailing-comma", "{{ [1, 2,] }} {{ {'a': 1,} }} {{ (1, 2,) }}", {}),
    # operators
    ("op/arithmetic-mixed", "{{ 1 + 2.5 }} {{ true + 1 }} {{ 3 * 'ab' }} {{ 'ab' * 2 }} {{ [1] * 3 }} {{ [1] + [2, 3] }} {{ 'a' + 'b' }} {{ -(3) }} {{ +4 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 2 * 3 + 4 * 5 }}", {}),
    ("op/concat", "{{ 'a' ~ 1 ~ none ~ true ~ [1] ~ 2.5 ~ undefined_name ~ 'z' }}", {}),
    ("op/compare", "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' == 'a' }} {{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} {{ none == none }} {{ 'a' != 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'abc' < 'abd' }} {{ [1, 2] < [1, 3] }} {{ 2 >= 2.0 }} {{ 1 == '1' }} {{ x == none }}", {}),
    ("op/in", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 3 not in [1, 2] }} {{ '' in 'abc' }} {{ 1 in (1, 2) }} {{ 'a' in undefined_name }}", {}),
    ("op/logic-returns-operands", "{{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }} {{ none or [] }} {{ not 0 }} {{ not 'a' }} {{ not none and 1 }} {{ 1 if 0 else 2 }} [{{ 'y' if false }}] {{ 'a' if true else 'b' if true else 'c' }}", {}),
    ("op/precedence-filters-and-unary", "{{ -3 | abs }} {{ (-3) | abs }} {{ 'x' + 'abc' | upper + 'y' }} {{ not 1 == 2 }} {{ (2 + 3) ~ 4 }} {{ 2 ~ (3 + 4) }} {{ 1 + 2 * 3 ** 2 }} {{ [3, 1] | sort | first + 10 }}", {}),
    # variables, attributes, subscripts, slices
    ("expr/attribute-falls-back-to-key", "{{ m.role }} {{ m['role'] }} {{ m.content | length }} [{{ m.missing }}] {{ m.missing is defined }} {{ m['missing'] is undefined }} {{ l.0 }} {{ l[1] }} {{ l[-1] }}",
     {"m": {"role": "user", "content": "hello"}, "l": [10, 20, 30]}),
    ("expr/slices", "{{ s[1:3] }}|{{ s[:2] }}|{{ s[2:] }}|{{ s[::-1] }}|{{ s[-2:] }}|{{ s[:-1] }}|{{ s[::2] }}|{{ s[5:1:-2] }}|{{ l[1:] }}|{{ l[:-1] }}|{{ l[10:] }}|{{ l[-10:1] }}|{{ s[1:-1:] }}|{{ l[::-1][0] }}",
     {"s": "abcdefg", "l": [1, 2, 3]}),
    ("expr/string-index-unicode", "{{ s[0] }}|{{ s[1] }}|{{ s[-1] }}|{{ s | length }}|{{ s[1:3] }}|{{ s | reverse }}|{{ s | list }}", {"s": "a👋é世"}),
    ("expr/nested-data", "{{ data.a.b[1].c }} {{ data['a']['b'][0] }} {{ data.a.b | length }}", {"data": {"a": {"b": [1, {"c": "deep"}]}}}),
    ("expr/dict-methods", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %} {{ d.keys() | list }} {{ d.values() | list }} {{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 'dflt') }} {{ d | list }} {{ d | length }}", {"d": {"b": 1, "a": [2]}}),
    ("expr/string-methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ s.upper() }}|{{ s.lower() }}|{{ 'hello wORLD it\\'s'.title() }}|{{ 'hello World'.capitalize() }}|{{ s.replace('l', 'L') }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ s.find('l') }}|{{ s.find('z') }}|{{ s.count('l') }}|{{ s.startswith('  He') }}|{{ s.endswith(('x', '  ')) }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b \\n c '.split() }}|{{ 'a-b-c'.split('-', 1) }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ ', '.join(['x', 'y']) }}|{{ 'ab\\ncd'.splitlines() }}|{{ 'x'.join('abc') }}",
     {"s": "  Hello world  "}),
    ("expr/string-methods-more", "{{ '42'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'Ab'.islower() }} {{ 'AB'.isupper() }} {{ 'abc'.rfind('c') }} {{ 'abc'.index('b') }} {{ 'a b'.partition(' ') }} {{ '{}-{}'.format(1, 'x') }} {{ 'x'.center(5) }}|{{ 'x'.ljust(3) }}|{{ 'x'.rjust(3, '*') }}|{{ 'Hello'.swapcase() }} {{ '5'.zfill(3) }} {{ 'abc'.removeprefix('a') }} {{ 'abc'.removesuffix('c') }}", {}),
    ("expr/list-methods", "{{ l.index(2) }} {{ l.count(1) }} {{ l | sum }} {{ l | min }} {{ l | max }}", {"l": [1, 2, 1, 3]}),
    ("expr/call-with-keywords", "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', punct='?') }} {{ greet(greeting='Hi', name='Cy') }}", {}),
    # statements
    ("stmt/if-elif-else", "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x is even %}even{% else %}other{% endif %} {% endfor %}", {}),
    ("stmt/for-loop-variables", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}] {% endfor %}", {}),
    ("stmt/for-cycle-and-depth", "{% for x in range(4) %}{{ loop.cycle('odd', 'even') }}{{ loop.depth }}{{ loop.depth0 }} {% endfor %}", {}),
    ("stmt/for-filter-and-else", "{% for x in range(10) if x is odd %}{{ x }}:{{ loop.index }}/{{ loop.length }}{% if not loop.last %},{% endif %}{% endfor %} {% for x in [] %}x{% else %}empty{% endfor %} {% for x in [0] if x %}x{% else %}filtered away{% endfor %}", {}),
    ("stmt/for-unpacking", "{% for a, b in [[1, 2], (3, 4)] %}{{ a }}-{{ b }} {% endfor %}{% for k, v in {'x': 1, 'y': 2} | items %}{{ k }}{{ v }}{% endfor %} {% for k, v in {'x': 1} | dictsort %}{{ k }}{{ v }}{% endfor %}", {}),
    ("stmt/for-over-dict-and-string", "{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %} {% for c in 'hey' %}{{ c }}.{% endfor %}", {}),
    ("stmt/nested-loops", "{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{{ loop.index }}| {% endfor %}", {}),
    ("stmt/break-continue", "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("stmt/set-scoping", "{% set x = 1 %}{% for i in range(2) %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }} {% if true %}{% set y = 'if-leaks' %}{% endif %}{{ y }} {% for i in [1, 2] %}{% if i == 2 %}[{{ z }}]{% endif %}{% set z = i %}{% endfor %}", {}),
    ("stmt/set-namespace", "{% set ns = namespace(found=false, count=0, items=[]) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% set ns.count = ns.count + 1 %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.count }} {{ ns.items }} {{ ns.missing is defined }}",
     {"messages": [{"role": "user"}, {"role": "assistant"}, {"role": "user"}]}),
    ("stmt/set-tuple-and-block", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set block %}inside {{ a }}{% endset %}[{{ block }}] {% set t = 1, 2 %}{{ t }}", {}),
    ("stmt/set-reassigns-input", "{% set messages = messages[1:] %}{{ messages | length }} {% set messages = messages + [{'role': 'x'}] %}{{ messages[-1].role }}", {"messages": [1, 2, 3]}),
    ("stmt/macro", "{% macro render(m, sep=': ') -%}\n{{ m.role }}{{ sep }}{{ m.content }}\n{%- endmacro %}{% for m in messages %}{{ render(m) }}|{{ render(m, sep='=') }};{% endfor %}{{ render.name }}",
     {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
    ("stmt/macro-sees-outer-variables", "{% macro show() %}{{ outer }}/{{ later }}{% endmacro %}{% set later = 'L' %}{{ show() }}", {"outer": "O"}),
    ("stmt/macro-recursion", "{% macro count(n) %}{{ n }}{% if n > 0 %},{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}", {}),
    ("stmt/generation-block", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}<{{ m.content }}>{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}",
     {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}),
    ("stmt/filter-block", "{% filter upper %}shout {{ 'this' }}{% endfilter %}", {}),
    # filters
    ("filter/string", "{{ '  x  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ 'ab' | upper }}|{{ 'AB' | lower }}|{{ 'hELLO wORLD' | capitalize }}|{{ 'hello wORLD-foo (bar) it\\'s' | title }}|{{ 'aaa' | replace('a', 'b') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 5 | string }}|{{ [1] | string }}|{{ none | string }}|{{ '<a href=\"x\">&\\'' | e }}|{{ '<b>' | escape }}|{{ '<i>' | safe }}|{{ 'abc' | length }}|{{ 'ab' | count }}|{{ 'a b c' | wordcount }}",
     {}),
    ("filter/default", "{{ missing | default('d') }} {{ missing | d('dd') }} {{ '' | default('e') }}|{{ '' | default('e', true) }} {{ none | default('n') }} {{ none | default('n', boolean=true) }} {{ 0 | default(5, true) }} {{ 'set' | default('no') }}", {}),
    ("filter/sequences", "{{ [3, 1, 2] | first }} {{ [3, 1, 2] | last }} {{ 'abc' | first }} [{{ [] | first }}] {{ [3, 1, 2] | sort }} {{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort }} {{ ['b', 'A', 'c'] | sort(case_sensitive=true) }} {{ [1, 2, 2, 1, 3] | unique | list }} {{ ['a', 'A', 'b'] | unique | list }} {{ [1, 2] | reverse | list }} {{ 'abc' | reverse }} {{ (1, 2) | list }} {{ 'ab' | list }} {{ [1, 2] | join }} {{ ['a', 1, none] | join(', ') }} {{ range(3) | list }} {{ [[1, 2], [3]] | sum(start=[]) }}", {}),
    ("filter/numbers", "{{ '42' | int }} {{ ' 7 ' | int }} {{ 'x' | int }} {{ 'x' | int(-1) }} {{ 3.9 | int }} {{ '3.5' | float }} {{ 'x' | float }} {{ 3 | float }} {{ -3 | abs }} {{ -2.5 | abs }} {{ 2.567 | round }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.1 | round(method='ceil') }} {{ 2.9 | round(0, 'floor') }} {{ true | int }} {{ '0x1A' | int(base=16) }}", {}),
    ("filter/items-and-dictsort", "{{ d | items | list }} {{ d | dictsort }} {{ d | dictsort(reverse=true) }} {{ d | dictsort(by='value') }}", {"d": {"b": 2, "a": 3, "c": 1}}),
    ("filter/map-select-reject", "{{ users | map(attribute='name') | list }} {{ users | map(attribute='age', default=0) | list }} {{ ['a', 'b'] | map('upper') | list }} {{ users | selectattr('admin') | map(attribute='name') | list }} {{ users | rejectattr('admin') | map(attribute='name') | join(',') }} {{ users | selectattr('age', 'defined') | list | length }} {{ users | selectattr('name', 'equalto', 'Bo') | first }} {{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3, 4] | reject('odd') | list }} {{ [0, 1, '', 'a'] | select | list }} {{ ['a', 'code_interpreter', 'b'] | reject('equalto', 'code_interpreter') | join(', ') }} {{ [1, 5, 10] | select('gt', 4) | list }} {{ ['x', 'y'] | select('in', ['y']) | list }}",
     {"users": [{"name": "Al", "age": 30, "admin": True}, {"name": "Bo", "admin": False}, {"name": "Cy", "age": 5}]}),
    ("filter/tojson", "{{ data | tojson }}\n{{ data | tojson(indent=2) }}\n{{ data | tojson(indent=4) }}\n{{ 'é\"\\\\/\\n\\t\\x01\\u2028' | tojson }} {{ [1.0, 0.5, 1e20, -0.0, 1e-7, 9007199254740993] | tojson }} {{ none | tojson }} {{ true | tojson }} {{ (1, 'a') | tojson }} {{ {} | tojson(indent=2) }} {{ [] | tojson(indent=2) }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ {'a': [1, 2]} | tojson(separators=(',', ':')) }} {{ {1: 'int key', true: 'bool key', none: 'none key'} | tojson }} {{ {'a': 1} | tojson(indent='\\t') }} {{ [1] | tojson(indent=0) }}",
     {"data": {"name": "get_weather", "nested": {"list": [1, "two", None, True, 2.5, {}], "empty": []}, "ünïcode": "世界 👋"}}),
    ("filter/chained-with-args", "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | map('trim') | join(' / ') | upper }}",
     {"messages": [{"role": "user", "content": " a "}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c "}]}),
    ("filter/batch-slice-center-indent", "{{ [1, 2, 3, 4, 5] | batch(2) | list }} {{ 'a\\nb' | indent(2) }}|{{ 'a\\nb' | indent(2, first=true) }}|{{ 'abc' | center(7) }}|{{ [1, 2, 3] | batch(2, 0) | list }}", {}),
    # tests
    ("test/types", "{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 1 is none }} {{ 'a' is string }} {{ 1 is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.5 is float }} {{ true is boolean }} {{ 1 is boolean }} {{ {} is mapping }} {{ [] is mapping }} {{ 'a' is iterable }} {{ [] is iterable }} {{ {} is iterable }} {{ 1 is iterable }} {{ 'a' is sequence }} {{ {} is sequence }} {{ 1 is sequence }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ none is false }} {{ range(2) is iterable }} {{ ns is mapping }}",
     {}),
    ("test/numbers-and-comparisons", "{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 1 is eq 1 }} {{ 1 is ne 2 }} {{ 1 is lt 2 }} {{ 2 is le 2 }} {{ 3 is gt 2 }} {{ 3 is ge 4 }} {{ 1 is equalto 1 }} {{ 1 is sameas 1 }} {{ none is sameas none }} {{ 'A' is upper }} {{ 'a' is lower }} {{ 2 is in [1, 2] }} {{ x is not defined }} {{ 3 is not odd }} {{ not 3 is odd }} {{ 'raise_exception' is callable }} {{ raise_exception is callable }} {{ namespace is callable }}",
     {}),
    # globals
    ("global/range", "{{ range(3) | list }} {{ range(1, 4) | list }} {{ range(10, 0, -3) | list }} {{ range(0) | list }} {{ range(5)[1:3] | list }} {{ range(4) | length }} {% for i in range(2, 4) %}{{ i }}{% endfor %} {{ 2 in range(3) }}", {}),
    ("global/namespace-printed", "{% set ns = namespace(a=1, b='x') %}{{ ns }} {{ ns.a }}", {}),
    ("global/strftime-now", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%A %B %j %I %p %y %%') }}|{{ strftime_now('%-d') if false else '' }}", {}),
    ("error/raise-exception-in-loop", "{% for m in messages %}\n{% if m.role not in ['user', 'assistant'] %}\n{{ raise_exception('Role ' ~ m.role ~ ' is not supported: \"' + m.content + '\"') }}\n{% endif %}\n{{ m.content }}\n{% endfor %}",
     {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]}),
    ("global/dict-and-lipsum-free", "{{ dict(a=1, b='x') }} {{ dict(a=1) | tojson }}", {}),
    # undefined behaviour
    ("undefined/prints-empty-falsy-iterates-empty", "[{{ u }}] {{ u is defined }} {{ 'yes' if u else 'no' }} {% for x in u %}x{% else %}empty{% endfor %} {{ u | length }} {{ u | default('dflt') }} {{ u == none }} {{ not u }} {{ u | list }} {{ u ~ 'cat' }} [{{ u | trim }}] [{{ u | join(',') }}]", {}),
    ("undefined/dunder-attribute-is-undefined", "[{{ ''.__class__ }}] [{{ messages.__len__ }}]", {"messages": []}),
    ("undefined/missing-key-then-is-defined", "{% for m in messages %}{% if m.tool_calls is defined %}calls{% else %}{{ m.content }}{% endif %}{% if not m.tool_calls %}!{% endif %} {% endfor %}",
     {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "tool_calls": [1]}]}),
]

# Patterns from published templates, and whitespace corners, checked against jinja2 the same way.
MORE = [
    ("more/content-parts-or-string", "{% for m in messages %}{%- set content = m['content'] if m['content'] is string else m['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}\n[{{ content }}]\n{% endfor %}",
     {"messages": [{"content": "plain"}, {"content": [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]}]}),
    ("more/namespace-accumulates-list", "{% set ns = namespace(system=[], n=0) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.system = ns.system + [m.content] %}{% endif %}{% set ns.n = ns.n + m.content | length %}{% endfor %}{{ ns.system | join(' / ') }} {{ ns.n }}",
     {"messages": [{"role": "system", "content": "s1"}, {"role": "user", "content": "u"}, {"role": "system", "content": "s2"}]}),
    ("more/last-message-logic", "{%- for m in messages[1:] %}\n  {{- '\\n' if not loop.first -}}\n  {{ loop.index }}:{{ m.role }}{{ '!' if loop.last and m.role == 'user' }}\n{%- endfor %}\n{{- messages[-1].content[:3] ~ '...' }}",
     {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "first"}, {"role": "assistant", "content": "second"}, {"role": "user", "content": "third question"}]}),
    ("more/reverse-search-with-break", "{% set ns = namespace(last_user=-1) %}{% for i in range(messages | length - 1, -1, -1) %}{% if messages[i].role == 'user' %}{% set ns.last_user = i %}{% break %}{% endif %}{% endfor %}{{ ns.last_user }} {% for m in messages[::-1] %}{{ m.role[0] }}{% endfor %}",
     {"messages": [{"role": "user"}, {"role": "assistant"}, {"role": "user"}, {"role": "assistant"}]}),
    ("more/content-with-crlf-and-tags", "{{ messages[0].content }}|{{ messages[0].content | trim }}|{{ messages[0].content | length }}", {"messages": [{"content": " a\r\nb {% raw %} {{ x }} \t"}]}),
    ("more/set-default-and-append", "{% set x = x | default([]) + [1] %}{{ x }} {% set y = y if y is defined else 'dflt' %}{{ y }} {{ (z or {}).get('k', 'none') }}", {}),
    ("more/dict-literal-keys", "{{ {'a': 1, 'a': 2} }} {{ {(1, 2): 'tuple key'}[(1, 2)] }} {{ {'a': 1}.a }} {{ {1: 'one'}[1.0] }} {{ {True: 'yes'}[1] }}", {}),
    ("more/whitespace-combinations", "A\n  {%- if true -%}\n    B\n  {%- endif -%}\n  C\n\t{% if true %}\n\tD\n\t{%- endif %}\n  {#- comment -#}  E  {{- ' F ' -}}  G\n{% raw -%}  H  {%- endraw %}\nI", {}),
    ("more/whitespace-combinations-plain", "A\n  {%- if true -%}\n    B\n  {%- endif -%}\n  C\n\t{% if true %}\n\tD\n\t{%- endif %}\n  {#- comment -#}  E  {{- ' F ' -}}  G\n{% raw -%}  H  {%- endraw %}\nI", {}, "plain"),
    ("more/block-at-end-of-line-after-text", "x {% if true %}\ny{% endif %}\n  z {%- if true %} w{% endif %}\n", {}),
    ("more/nested-quotes-and-escapes", "{{ \"it's \\\"q\\\"\" }} {{ '\\\\n is not a newline' }} {{ 'tab:\\t.' | tojson }}", {}),
    ("more/filters-on-loop-values", "{{ messages | map(attribute='content') | map('length') | sum }} {{ messages | map(attribute='content') | map('upper') | join(',') }} {{ range(3) | join(',') }} {{ [1, 2, 3] | map('string') | join }} {{ 'abc' | replace('', '-') }}",
     {"messages": [{"content": "ab"}, {"content": "cde"}]}),
    ("more/compare-and-test-combos", "{{ x is string and x.startswith('a') }} {{ not y is none }} {{ y is not none and y > 1 }} {{ 1 if [] else 2 }} {{ none is not defined }} {{ (x ~ '') is defined }}", {"x": "abc", "y": 2}),
    ("more/numbers-from-json", "{{ n }} {{ f }} {{ n + f }} {{ n / 2 }} {{ n // 2 }} {{ f | int }} {{ big }} {{ -n }} {{ tiny }}", {"n": 7, "f": 2.5, "big": 9007199254740993, "tiny": 1e-9}),
    ("more/macro-default-uses-earlier-parameter", "{% macro m(a, b=a ~ '!') %}{{ a }}{{ b }}{% endmacro %}{{ m('x') }} {{ m('x', 'y') }} [{{ m() }}]", {}),
    ("more/loop-inside-macro-inside-loop", "{% macro items(l) %}{% for i in l %}{{ loop.index }}{{ i }}{% endfor %}{% endmacro %}{% for l in [[1, 2], [3]] %}({{ items(l) }}:{{ loop.index }}){% endfor %}", {}),
    ("more/generation-scope", "{% set a = 1 %}{% generation %}{% set a = 2 %}{{ a }}{% endgeneration %}{{ a }}", {}),
    ("more/float-floor-division", "{{ 1 // 0.1 }} {{ 1 % 0.1 }} {{ -7.5 // 2 }} {{ -7.5 % 2 }} {{ 7.5 % -2 }} {{ 0.0 // -3 }} {{ -0.0 % 5 }} {{ 5 % -0.0 if false else 1e308 // 1e-308 }} {{ -1 % 1e100 }}", {}),
    ("more/printf-formatting", "{{ '%s and %d' % ('a', 3) }}|{{ '%5.2f|%-6s|%06d|%+d|%x|%#o|%c|%%|%r|% d|%X' % (3.14159, 'ab', 42, 5, 255, 8, 65, 'q', 7, -255) }}|{{ '%(name)s is %(age)d' % {'name': 'Al', 'age': 30} }}|{{ 'no args' % () }}|{{ '%s' % [1, 2] }}|{{ '%s' % none }}|{{ 'x' % [1] }}|{{ '%.3s' % 'abcdef' }}|{{ '%e' % 12345.678 }}|{{ '%10.3E' % 0.000123 }}|{{ '%d' % 3.9 }}|{{ '%s' % missing }}|{{ '%s' | format('one') }}|{{ '%s-%s' | format(1, 2) }}|{{ '%(a)s' | format(a='kw') }}|{{ 'plain' | format }}", {}),
    ("more/namespace-holding-itself", "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{% set ns.l = [ns] %}{{ ns }}", {}),
    ("more/undefined-filter-chains", "[{{ missing | trim | upper }}] [{{ missing | list | length }}] [{{ missing | items | list }}] [{{ missing | default('x') | upper }}] [{{ missing | string }}] {{ missing | tojson if false else 'ok' }}", {}),
]

# (name, source, variables): templates that must fail, with the line jinja2 reports
FAILURES = [
    ("error/syntax-unclosed-for", "{% for m in messages %}\n{{ m }}\n", {}),
    ("error/syntax-unknown-tag", "line one\n{% frobnicate %}", {}),
    ("error/syntax-bad-expression", "ok\nok\n{{ 1 + }}", {}),
    ("error/syntax-unclosed-variable", "{{ 'a' ", {}),
    ("error/syntax-unclosed-string", "a\n{{ 'abc }}", {}),
    ("error/syntax-unclosed-comment", "a\n{# never closed", {}),
    ("error/syntax-endif-without-if", "{% endif %}", {}),
    ("error/syntax-else-after-else", "{% if a %}{% else %}{% else %}{% endif %}", {}),
    ("error/syntax-mismatched-bracket", "{{ [1, 2) }}", {}),
    ("error/syntax-break-outside-loop", "{% break %}", {}),
    ("error/syntax-unknown-filter", "\n{{ 'a' | frobnicate }}", {}),
    ("error/syntax-unknown-test", "\n\n{{ 'a' is frobnicate }}", {}),
    ("error/syntax-do-not-enabled", "{% do x %}", {}),
    ("error/syntax-assign-to-literal", "{% set 1 = 2 %}", {}),
    ("error/raise-exception", "a\nb\n{{ raise_exception('Only user and assistant roles are supported!') }}", {}),
    ("error/undefined-attribute-of-undefined", "x\n{{ messages[0].content.text.more }}", {"messages": [{"role": "user"}]}),
    ("error/undefined-arithmetic", "{{ missing + 1 }}", {}),
    ("error/undefined-subscript", "\n{{ missing['a'] }}", {}),
    ("error/undefined-call", "{{ missing() }}", {}),
    ("error/add-str-and-int", "{{ 'a' + 1 }}", {}),
    ("error/compare-int-and-str", "{{ 1 < 'a' }}", {}),
    ("error/divide-by-zero", "{{ 1 / 0 }}", {}),
    ("error/iterate-int", "{% for x in 5 %}{% endfor %}", {}),
    ("error/sandbox-blocks-mutation", "{% set l = [1] %}{{ l.append(2) }}", {}),
    ("error/set-attribute-of-non-namespace", "{% set d = {} %}{% set d.a = 1 %}", {}),
    ("error/macro-too-many-arguments", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}),
    ("error/tojson-undefined", "{{ missing | tojson }}", {}),
    ("error/multiline-expression", "a\n{{ 'x' +\n   1 }}", {}),
    ("error/multiline-if", "{% if messages[0]\n   .content.bad %}x{% endif %}", {"messages": [{}]}),
    ("error/iterate-undefined-attribute", "{% for m in messages %}\n{% for c in m.content.parts %}{% endfor %}\n{% endfor %}", {"messages": [{"role": "user"}]}),
    ("error/unpack-mismatch", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("error/raise-non-string", "{{ raise_exception(42) }}", {}),
    ("error/printf-not-enough-arguments", "{{ '%s %s' % ('a',) }}", {}),
    ("error/printf-unused-argument", "{{ 'x' % 5 }}", {}),
    ("error/printf-number-expected", "{{ '%d' % 'a' }}", {}),
    ("error/odd-of-a-string", "{{ 'a' is odd }}", {}),
    ("error/float-of-undefined", "{{ missing | float }}", {}),
    ("error/int-of-undefined", "\n{{ missing.x | int }}", {"missing": {}}),
    ("error/indent-of-undefined", "{{ missing | indent(2) }}", {}),
    ("error/indent-of-a-number", "{{ 3 | indent(2) }}", {}),
    ("error/unhashable-in-dict", "{{ [] in {} }}", {}),
    ("error/slice-a-number", "{{ x[1:] }}", {"x": 3}),
    ("error/slice-a-dict", "{{ d[:1] }}", {"d": {"a": 1}}),
    ("error/sort-mixed-types", "{{ [1, 'a', 2] | sort }}", {}),
    ("error/dictsort-mixed-types", "{{ {'a': 1, 'b': 'x'} | dictsort(by='value') }}", {}),
    ("error/index-error-then-attribute", "{{ messages[5].role }}", {"messages": []}),
]


def error_line(exc):
    """The template line an exception was raised on, as jinja2's rewritten traceback shows it."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
    return frames[-1].lineno if frames else None


def render(source, variables, environment="hf"):
    try:
        return {"expected": ENVIRONMENTS[environment].from_string(source).render(**variables)}
    except Exception as e:  # noqa: BLE001 — the failure is the golden result
        return {"error": {"type": type(e).__name__, "message": str(e), "line": error_line(e)}}


def main():
    templates = {}
    for file in sorted(os.listdir(os.path.join(HERE, "templates"))):
        with open(os.path.join(HERE, "templates", file), encoding="utf-8", newline="") as f:
            templates[file.removesuffix(".jinja")] = f.read()
    assert set(templates) == set(PUBLISHED) | set(TOOL_USE), sorted(templates)

    cases = []
    for case in published_cases():
        cases.append({**case, "environment": "hf", **render(templates[case["template"]], case["variables"])})
    for name, source, variables, *environment in FEATURES + MORE + FAILURES:
        env = environment[0] if environment else "hf"
        templates[name] = source
        cases.append({"name": name, "template": name, "environment": env, "variables": variables, **render(source, variables, env)})
        wanted_failure = name.startswith("error/")
        assert ("error" in cases[-1]) == wanted_failure, (name, cases[-1])

    golden = {
        "generator": f"make_golden.py with jinja2 {jinja2.__version__}",
        "now": NOW.isoformat(),
        "templates": templates,
        "cases": cases,
    }
    with open(os.path.join(HERE, "golden.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} expected errors")


if __name__ == "__main__":
    main()
