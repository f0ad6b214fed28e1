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
    CFGSpec("csv_rows", 'root ::= row ("\\n" row){0,3}\nrow ::= field ("," field){0,3}\nfield ::= [a-z0-9]{1,4}'),
    CFGSpec("json_number_array", 'root ::= "[" (num ("," num)*)? "]"\nnum ::= "-"? ("0" | [1-9] [0-9]{0,3})'),
    CFGSpec("json_fixed_keys", 'root ::= "{\\"name\\":\\"" [a-z]{1,8} "\\",\\"age\\":" [0-9]{1,2} "}"'),
    CFGSpec("json_string_escapes", r'root ::= "\"" char* "\""' + '\n'
                                   r'char ::= [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-f]{4})'),
    CFGSpec("arith_functions", 'root ::= expr\nexpr ::= term (("+" | "-") term)*\nterm ::= factor (("*" | "/") factor)*\n'
                               'factor ::= "-" factor | num | "(" expr ")" | fn "(" expr ")"\n'
                               'fn ::= "sin" | "cos" | "max"\nnum ::= [0-9]+ ("." [0-9]+)?'),
    CFGSpec("boolean_expr", 'root ::= disj\ndisj ::= conj ("|" conj)*\nconj ::= atom ("&" atom)*\n'
                            'atom ::= "true" | "false" | "!" atom | "(" disj ")" | [xyz]'),
    CFGSpec("sql_insert", 'root ::= "INSERT INTO " ident " (" ident (", " ident){0,2} ") VALUES (" val (", " val){0,2} ");"\n'
                          'ident ::= [a-z]{1,6}\nval ::= [0-9]{1,4} | "\'" [a-z ]{0,6} "\'" | "NULL"'),
    CFGSpec("sql_select_tail", 'root ::= "SELECT " ident " FROM " ident tail ";"\n'
                               'tail ::= "" | " ORDER BY " ident | " LIMIT " num | " ORDER BY " ident " LIMIT " num\n'
                               'ident ::= [a-z]{1,6}\nnum ::= [1-9] [0-9]?'),
    CFGSpec("nested_dicts", 'root ::= dict\ndict ::= "{" (entry ("," entry)*)? "}"\nentry ::= [a-z] ":" (dict | [0-9])'),
    CFGSpec("tuple_list", 'root ::= "[" (tup (", " tup)*)? "]"\ntup ::= "(" [0-9] ", " [a-z] ")"'),
    CFGSpec("nested_number_lists", 'root ::= nl\nnl ::= "[" (item ("," item)*)? "]"\nitem ::= nl | "-"? [0-9]{1,3}'),
    CFGSpec("markdown_list", 'root ::= line ("\\n" line){0,4}\nline ::= "- " [a-z ]{1,10}'),
    CFGSpec("date_time", 'root ::= [0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) '
                         '("T" [01] [0-9] ":" [0-5] [0-9])?'),
    CFGSpec("email_like", 'root ::= [a-z]{1,8} ("." [a-z]{1,8})? "@" [a-z]{2,8} "." ("com" | "org" | "net")'),
    CFGSpec("ipv4_like", 'root ::= octet "." octet "." octet "." octet\noctet ::= "0" | [1-9] [0-9]{0,2}'),
    CFGSpec("lisp_define", 'root ::= "(define " name " " expr ")"\nname ::= [a-z]{1,5}\n'
                           'expr ::= [0-9]{1,3} | name | "(" op (" " expr){1,3} ")"\nop ::= "+" | "*" | "-"'),
    CFGSpec("enum_choice", 'root ::= "color=" ("red" | "green" | "blue") ("; size=" ("S" | "M" | "L"))?'),
    CFGSpec("yaml_like", 'root ::= pair ("\\n" pair){0,3}\n'
                         'pair ::= [a-z]{1,6} ": " (scalar | "[" scalar (", " scalar){0,2} "]")\n'
                         'scalar ::= [0-9]{1,3} | "true" | "false"'),
    CFGSpec("function_call", 'root ::= name "(" (arg (", " arg){0,2})? ")"\nname ::= [a-z_]{1,8}\n'
                             'arg ::= [a-z]{1,4} "=" ([0-9]{1,3} | "\\"" [a-z]{0,5} "\\"")'),
    CFGSpec("tree_depth2", 'root ::= "N(" sub "," sub ")"\nsub ::= "L" | "N(" leaf "," leaf ")"\nleaf ::= "L" | [0-9]'),
    CFGSpec("chess_moves", 'root ::= move (" " move){0,4}\nmove ::= [KQRBN]? [a-h] [1-8] | "O-O" | "O-O-O"'),
    CFGSpec("semver", 'root ::= num "." num "." num ("-" [a-z]{1,6} ("." num)?)?\nnum ::= "0" | [1-9] [0-9]{0,2}'),
]
