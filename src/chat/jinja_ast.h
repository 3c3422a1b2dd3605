// Syntax tree of a parsed template (mirrors jinja2/nodes.py, reduced to what we support).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace slm::chat::jinja {

struct Expr;
struct Node;
using ExprPtr = std::unique_ptr<Expr>;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

enum class BinOp : uint8_t { Add, Sub, Mul, Div, FloorDiv, Mod, Pow };
enum class CmpOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct CallSyntax {
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  ExprPtr dyn_args;    // *args
  ExprPtr dyn_kwargs;  // **kwargs
};

struct Expr {
  enum class Kind : uint8_t {
    Const,     // value
    Name,      // name
    List,      // items
    Tuple,     // items
    Dict,      // items: key, value, key, value, ...
    Getattr,   // a.name
    Getitem,   // a[b]
    Slice,     // a:b:c (each may be null), only as a Getitem index
    Call,      // a(call)
    Filter,    // a | name(call); a is null in filter blocks / set blocks
    Test,      // a is name(call)
    Neg,       // -a
    Pos,       // +a
    Not,       // not a
    Binary,    // a <bin_op> b
    And,       // a and b
    Or,        // a or b
    Concat,    // items joined with ~
    Compare,   // a, then ops/operands
    CondExpr,  // b if a else c (c may be null)
    NSRef,     // name.attr as an assignment target
  };

  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  ExprPtr a, b, c;
  std::vector<ExprPtr> items;
  CallSyntax call;
  BinOp bin_op = BinOp::Add;
  std::vector<std::pair<CmpOp, ExprPtr>> ops;
  // Filter/Test whose name is unknown inside an if/conditional expression: Jinja reports
  // it only when evaluated.
  bool unknown = false;

  Expr(Kind k, int l) : kind(k), line(l) {}
};

struct Node {
  enum class Kind : uint8_t {
    Text,         // text
    Output,       // expr
    If,           // branches (test, body); else_body
    For,          // target in expr [if test] body else_body, recursive
    Set,          // target = expr
    SetBlock,     // target [| filter] = body
    Macro,        // name(params=defaults) body
    CallBlock,    // call caller(params=defaults) body
    FilterBlock,  // filter(body)
    With,         // targets = values, body
    Break,
    Continue,
    Scope,  // body rendered in place ({% generation %})
  };

  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr target;
  ExprPtr test;  // For: the `if` filter; SetBlock/FilterBlock: the Filter chain (a == null)
  std::vector<std::pair<ExprPtr, NodeList>> branches;
  NodeList body;
  NodeList else_body;
  bool recursive = false;
  // Macro and CallBlock signature.
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  bool uses_caller = false;
  bool uses_varargs = false;
  bool uses_kwargs = false;
  // With.
  std::vector<ExprPtr> targets;
  std::vector<ExprPtr> values;

  Node(Kind k, int l) : kind(k), line(l) {}
};

struct Program {
  NodeList body;
};

// Parses a template; throws TemplateError naming the line.
std::unique_ptr<Program> parse(const std::string& source);

}  // namespace slm::chat::jinja
