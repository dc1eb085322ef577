#!/usr/bin/env python3
"""Turns a CUDA source (kernels/cuda/X.cu, or a .cuh header) into C++ that g++
compiles against the emulator's headers (tests/cuda_emu/include):

  kernel<<<grid, block[, shared[, stream]]>>>(args...);
      -> ::turbine_emu::launch(kernel, "kernel", <source location>,
                               grid, block, shared, stream, args...);
  __shared__ [__align__(n)] T name[dims];
      -> auto& name = ::turbine_emu::static_shared<T[dims][, n]>([] {});
  extern __shared__ [__align__(n)] T name[];
      -> T* const name = ::turbine_emu::dynamic_shared<T>();
  #include "kernels/cuda/X.cuh"  ->  #include "X.cuh.hpp" (its rewritten copy)
  #pragma unroll [n]  ->  a comment (nvcc's loop hint; g++ would warn)

Like nvcc, the output starts by including <cuda_runtime.h>. Every rewrite
keeps the source's line breaks where they were, and a #line directive names
the original file, so diagnostics and the emulator's reports point at the
.cu source. Anything this script does not understand (a launch it cannot
parse, a __shared__ form it does not know, __constant__ or __managed__
variables) stops it with an error naming the file and line.

  rewrite_cu.py INPUT OUTPUT
  rewrite_cu.py --check DIR NAME...   every .cu/.cuh in DIR is one of NAME
                                      and rewrites cleanly
"""
import os
import re
import sys


class RewriteError(Exception):
    pass


def code_mask(text):
    """text with comments and string/char literals blanked (newlines kept), so
    that searches see only code; offsets stay those of text."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != '\n':
                out[k] = ' '

    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif c == 'R' and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == '_')):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                raise RewriteError(f'line {line_of(text, i)}: malformed raw string')
            end = text.find(')' + m.group(1) + '"', i)
            if end < 0:
                raise RewriteError(f'line {line_of(text, i)}: unterminated raw string')
            end += len(m.group(1)) + 2
            blank(i + 1, end)
            i = end
        elif c in '"\'':
            # A ' between digits is a digit separator (1'000), not a literal.
            if c == "'" and i > 0 and text[i - 1].isalnum() and i + 1 < n and text[i + 1].isalnum():
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == '\\':
                    j += 1
                elif text[j] == '\n':
                    raise RewriteError(f'line {line_of(text, i)}: unterminated literal')
                j += 1
            blank(i + 1, j)
            i = j + 1
        else:
            i += 1
    return ''.join(out)


def line_of(text, offset):
    return text.count('\n', 0, offset) + 1


OPEN = {'(': ')', '[': ']', '{': '}'}
CLOSE = {')', ']', '}'}


def split_top_level(code, start, end):
    """Offsets of the top-level comma-separated parts of code[start:end]."""
    parts, depth, begin = [], 0, start
    for i in range(start, end):
        c = code[i]
        if c in OPEN:
            depth += 1
        elif c in CLOSE:
            depth -= 1
        elif c == ',' and depth == 0:
            parts.append((begin, i))
            begin = i + 1
    parts.append((begin, end))
    return parts


def matching(code, i, opener, closer):
    """Offset of the closer matching the opener at code[i]."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == opener:
            depth += 1
        elif code[j] == closer:
            depth -= 1
            if depth == 0:
                return j
    raise RewriteError(f'line {line_of(code, i)}: no matching {closer!r}')


def kernel_start(code, end):
    """Start of the kernel expression that ends at code[end - 1]: an
    identifier, possibly qualified (a::b) and with template arguments."""
    i = end
    while True:
        if code[i - 1] == '>':  # template arguments: back to the matching '<'
            depth = 0
            j = i - 1
            while j >= 0:
                if code[j] == '>':
                    depth += 1
                elif code[j] == '<':
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            if j < 0:
                raise RewriteError(f'line {line_of(code, end)}: unbalanced template arguments')
            i = j
            while i > 0 and code[i - 1].isspace():
                i -= 1
        j = i
        while j > 0 and (code[j - 1].isalnum() or code[j - 1] == '_'):
            j -= 1
        if j == i or code[j].isdigit():
            raise RewriteError(f'line {line_of(code, end)}: cannot read the kernel before <<<')
        i = j
        if code[max(0, i - 2):i] == '::':
            i -= 2
            if i == 0 or not (code[i - 1].isalnum() or code[i - 1] in '_>'):
                return i  # a leading :: (global scope)
            continue
        return i


def rewrite_launches(text, code, edits):
    for m in re.finditer(r'<<<', code):
        lt = m.start()
        if code[lt + 3] == '<':
            raise RewriteError(f'line {line_of(code, lt)}: "<<<<" is not a launch')
        end = lt
        while end > 0 and code[end - 1].isspace():
            end -= 1
        start = kernel_start(code, end)
        # The configuration, up to the matching >>>.
        depth, gt = 0, None
        for i in range(lt + 3, len(code)):
            c = code[i]
            if c in OPEN:
                depth += 1
            elif c in CLOSE:
                depth -= 1
            elif depth == 0 and code.startswith('>>>', i):
                gt = i
                break
            elif depth == 0 and c == ';':
                break
        if gt is None:
            raise RewriteError(f'line {line_of(code, lt)}: no ">>>" closes this launch')
        configs = split_top_level(code, lt + 3, gt)
        if not 2 <= len(configs) <= 4 or any(not code[a:b].strip() for a, b in configs):
            raise RewriteError(f'line {line_of(code, lt)}: a launch takes 2 to 4 configuration '
                               f'arguments, not "{text[lt + 3:gt].strip()}"')
        paren = gt + 3
        while paren < len(code) and code[paren].isspace():
            paren += 1
        if paren >= len(code) or code[paren] != '(':
            raise RewriteError(f'line {line_of(code, gt)}: no argument list after ">>>"')
        close = matching(code, paren, '(', ')')
        kernel = text[start:end]
        name = ' '.join(kernel.split())
        defaults = {2: ', 0, nullptr', 3: ', nullptr', 4: ''}[len(configs)]
        args = text[paren + 1:close]
        replacement = (f'::turbine_emu::launch({kernel}, "{name}", '
                       f'::std::source_location::current(), {text[end:lt].lstrip(" ")}'
                       f'{text[lt + 3:gt]}{defaults}'
                       f'{", " + args.lstrip(" ") if args.strip() else args})')
        edits.append((start, close + 1, replacement))


ALIGN = re.compile(r'__align__\s*\(\s*(\d+)\s*\)')


def rewrite_shared(text, code, edits):
    for m in re.finditer(r'\b__shared__\b', code):
        line_start = code.rfind('\n', 0, m.start()) + 1
        semicolon = code.find(';', m.start())
        line_end = code.find('\n', m.start())
        line_end = len(code) if line_end < 0 else line_end
        where = f'line {line_of(code, m.start())}'
        if semicolon < 0 or semicolon > line_end:
            raise RewriteError(f'{where}: a __shared__ declaration must fit on one line')
        indent = len(code[line_start:m.start()]) - len(code[line_start:m.start()].lstrip())
        decl_start = line_start + indent
        decl = code[decl_start:semicolon]
        if '=' in decl or ',' in split_top_level_text(decl):
            raise RewriteError(f'{where}: __shared__ variables take one declarator and no '
                               f'initializer: "{decl.strip()}"')
        align = None
        a = ALIGN.search(decl)
        if a:
            align = int(a.group(1))
            decl = decl[:a.start()] + decl[a.end():]
        words = decl.split()
        is_extern = 'extern' in words
        words = [w for w in words if w not in ('extern', '__shared__')]
        rest = ' '.join(words)
        if any(w in ('static', 'volatile', '__device__', 'const', 'constexpr') for w in words):
            raise RewriteError(f'{where}: unsupported __shared__ declaration "{decl.strip()}"')
        if is_extern:
            d = re.fullmatch(r'(.+?)\s*\b([A-Za-z_]\w*)\s*\[\s*\]', rest)
            if not d:
                raise RewriteError(f'{where}: expected "extern __shared__ T name[];", not '
                                   f'"{decl.strip()}"')
            if align is not None and align > 16:
                raise RewriteError(f'{where}: dynamic shared memory is 16-byte aligned, not '
                                   f'{align}')
            new = f'{d.group(1)}* const {d.group(2)} = ::turbine_emu::dynamic_shared<{d.group(1)}>();'
        else:
            d = re.fullmatch(r'(.+?)\s*\b([A-Za-z_]\w*)\s*((?:\[[^\[\]]+\]\s*)*)', rest)
            if not d or not d.group(1).strip():
                raise RewriteError(f'{where}: expected "__shared__ T name[dims];", not '
                                   f'"{decl.strip()}"')
            type_id = d.group(1) + ''.join(d.group(3).split())
            alignment = f', {align}' if align is not None else ''
            new = (f'auto& {d.group(2)} = ::turbine_emu::static_shared<{type_id}{alignment}>'
                   f'([] {{}});')
        # Work from the original text, whose comments after the ';' stay.
        edits.append((decl_start, semicolon + 1, new))


def split_top_level_text(s):
    depth, out = 0, []
    for c in s:
        if c in OPEN or c == '<':
            depth += 1
        elif c in CLOSE or c == '>':
            depth -= 1
        elif depth == 0:
            out.append(c)
    return ''.join(out)


def rewrite_includes(text, code, edits):
    # In code, literals are blanked between their quotes: the name comes from text.
    for m in re.finditer(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]*)"', code, re.M):
        name = text[m.start(1):m.end(1)]
        if name.endswith('.cuh'):
            edits.append((m.start(1), m.end(1), os.path.basename(name) + '.hpp'))


def rewrite_pragmas(code, edits):
    for m in re.finditer(r'^[ \t]*(#[ \t]*pragma[ \t]+unroll\b[^\n]*)', code, re.M):
        if '*/' in m.group(1):
            raise RewriteError(f'line {line_of(code, m.start())}: a comment after #pragma unroll')
        edits.append((m.start(1), m.end(1), f'/* {m.group(1).strip()} */'))


def rewrite(text, path):
    code = code_mask(text)
    for word in ('__constant__', '__managed__', '__grid_constant__'):
        w = re.search(r'\b' + word + r'\b', code)
        if w:
            raise RewriteError(f'line {line_of(code, w.start())}: {word} is not emulated')
    edits = []
    rewrite_launches(text, code, edits)
    rewrite_shared(text, code, edits)
    rewrite_includes(text, code, edits)
    rewrite_pragmas(code, edits)
    edits.sort()
    for (a0, a1, _), (b0, _, _) in zip(edits, edits[1:]):
        if b0 < a1:
            raise RewriteError(f'line {line_of(code, b0)}: overlapping rewrites')
    out = text
    for start, end, new in reversed(edits):
        if new.count('\n') != text.count('\n', start, end):
            raise RewriteError(f'line {line_of(code, start)}: a rewrite would move lines')
        out = out[:start] + new + out[end:]
    header = '#include <cuda_runtime.h>\n' if path.endswith('.cu') else ''
    return f'{header}#line 1 "{path}"\n{out}'


def main(argv):
    try:
        if len(argv) >= 2 and argv[0] == '--check':
            directory, names = argv[1], set(argv[2:])
            present = sorted(f for f in os.listdir(directory) if f.endswith(('.cu', '.cuh')))
            missing = [f for f in present if f not in names]
            if missing:
                raise RewriteError(f'{directory} has {", ".join(missing)}, which '
                                   'tests/cuda_emu/meson.build does not rewrite')
            for f in present:
                path = os.path.join(directory, f)
                try:
                    with open(path, encoding='utf-8') as src:
                        rewrite(src.read(), path)
                except RewriteError as e:
                    raise RewriteError(f'{path}: {e}') from None
            return 0
        if len(argv) != 2:
            print(__doc__, file=sys.stderr)
            return 2
        source, target = argv
        with open(source, encoding='utf-8') as src:
            text = src.read()
        try:
            out = rewrite(text, source)
        except RewriteError as e:
            raise RewriteError(f'{source}: {e}') from None
        tmp = target + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as dst:
            dst.write(out)
        os.replace(tmp, target)
        return 0
    except RewriteError as e:
        print(f'rewrite_cu.py: error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
