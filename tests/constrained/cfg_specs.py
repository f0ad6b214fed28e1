"""EBNF grammars run under both xgrammar and the lark backend, with an independent validator:
lark's own Earley parser (dynamic lexer) on the natural translation of the grammar, which shares
nothing with the character-level LALR driver under test."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from lark import Lark

from sglang.runtime.constrained.ebnf_to_lark import to_lark_natural


@dataclass(frozen=True)
class CFGSpec:
    name: str
    grammar: str

    def check(self, text: str) -> None:
        _earley(self.grammar).parse(text)  # raises lark's UnexpectedInput on invalid text


@lru_cache(maxsize=None)
def _earley(grammar: str) -> Lark:
    return Lark(to_lark_natural(grammar), parser="earley", lexer="dynamic")


CFG_SPECS = [
    CFGSpec("yes_no_list", 'root ::= item ("," item)*\nitem ::= "yes" | "no"'),
    CFGSpec("balanced", 'root ::= "()" | "(" root ")" | "[" root "]"'),
    CFGSpec("arith", 'root ::= expr\nexpr ::= term (("+" | "*") term)*\nterm ::= [0-9]+ | "(" expr ")"'),
    CFGSpec("arith_prec", 'root ::= sum\nsum ::= sum ("+" | "-") prod | prod\nprod ::= prod ("*" | "/") atom | atom\n'
                          'atom ::= [0-9] | "-" atom | "(" sum ")"'),
    CFGSpec("json_like", r'''root ::= value
value ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" (pair ("," pair)*)? "}"
pair ::= string ":" value
array ::= "[" (value ("," value)*)? "]"
string ::= "\"" [a-z ]* "\""
number ::= "-"? [0-9]+ ("." [0-9]+)?'''),
    CFGSpec("nested_lists", 'root ::= list\nlist ::= "[" (elem (", " elem)*)? "]"\nelem ::= list | [a-c]'),
    CFGSpec("sql_like", '''root ::= "SELECT " cols " FROM " ident where? ";"
cols ::= "*" | ident (", " ident){0,3}
ident ::= [a-z] [a-z0-9_]{0,5}
where ::= " WHERE " cond (" AND " cond)*
cond ::= ident " " op " " val
op ::= "=" | "<" | ">" | "<=" | ">=" | "<>"
val ::= [0-9]+ | "'" [a-z]* "'"'''),
    CFGSpec("key_values", 'root ::= kv ("\\n" kv)*\nkv ::= [a-z]{1,6} "=" [0-9]{1,3}'),
    CFGSpec("sexpr", 'root ::= sexp\nsexp ::= atom | "(" sexp (" " sexp)* ")"\natom ::= [a-z]+ | [0-9]+'),
    CFGSpec("bounded_repeat", 'root ::= "id:" [0-9]{2,4} ("-" [A-Z]{2})?'),
    CFGSpec("unicode", 'root ::= ("héllo" | "日本" | "ü") ("," [à-ÿ])*'),
    CFGSpec("escapes_and_negation", 'root ::= "\\"" ([^"\\\\] | "\\\\" ["\\\\nt])* "\\""'),
    CFGSpec("palindrome_like", 'root ::= "a" root "a" | "b" root "b" | "c"'),
    CFGSpec("forced_prefix", 'root ::= "The answer is: " ("yes" | "no") "."'),
]
