// Recursive-descent parser mirroring jinja2/parser.py (same precedence and error messages).
#include <set>

#include "chat/jinja.h"
#include "chat/jinja_ast.h"
#include "chat/jinja_builtins.h"
#include "chat/jinja_lexer.h"

namespace slm::chat::jinja {

namespace {

// Deepest nesting of statements and expressions we parse (and thus evaluate recursively).
constexpr int kMaxNesting = 200;

const std::set<std::string, std::less<>> kUnsupportedTags = {
    "block", "extends", "include", "import", "from", "autoescape"};

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  std::unique_ptr<Program> parse() {
    auto prog = std::make_unique<Program>();
    prog->body = subparse(nullptr);
    if (cur().type != TokenType::Eof) fail("unexpected " + describe_token(cur()));
    check_list(prog->body, false);
    return prog;
  }

 private:
  using EndTokens = std::vector<std::string>;  // tag names ("endfor", "else", ...)

  // RAII nesting counter.
  struct Nest {
    explicit Nest(Parser& p) : p_(p) {
      if (++p_.nesting_ > kMaxNesting)
        p_.fail(fmt::format("template is nested too deeply (more than {} levels)", kMaxNesting));
    }
    ~Nest() { --p_.nesting_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;
    Parser& p_;
  };

  // Counts iterations of the loops that build left-nested trees (a.b.c, a + b + c, filter
  // chains), so that the depth of every expression tree stays below kMaxNesting.
  struct NestMany {
    explicit NestMany(Parser& p) : p_(p) {}
    void add() {
      ++count_;
      if (++p_.nesting_ > kMaxNesting)
        p_.fail(fmt::format("template is nested too deeply (more than {} levels)", kMaxNesting));
    }
    ~NestMany() { p_.nesting_ -= count_; }
    NestMany(const NestMany&) = delete;
    NestMany& operator=(const NestMany&) = delete;
    Parser& p_;
    int count_ = 0;
  };

  [[noreturn]] void fail(const std::string& msg, int line = -1) const {
    throw TemplateError(msg, line < 0 ? cur().line : line);
  }

  const Token& cur() const { return toks_[pos_]; }
  const Token& look() const { return toks_[std::min(pos_ + 1, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }

  static bool is_name(const Token& t, std::string_view v) {
    return t.type == TokenType::Name && t.value == v;
  }
  static bool is_op(const Token& t, std::string_view v) {
    return t.type == TokenType::Operator && t.value == v;
  }
  bool name_is(std::string_view v) const { return is_name(cur(), v); }
  bool op_is(std::string_view v) const { return is_op(cur(), v); }
  bool skip_name(std::string_view v) {
    if (!name_is(v)) return false;
    next();
    return true;
  }
  bool skip_op(std::string_view v) {
    if (!op_is(v)) return false;
    next();
    return true;
  }

  [[noreturn]] void expected(const std::string& what) const {
    if (cur().type == TokenType::Eof) fail("unexpected end of template, expected '" + what + "'.");
    fail("expected token '" + what + "', got '" + describe_token(cur()) + "'");
  }
  const Token& expect_type(TokenType type, const std::string& what) {
    if (cur().type != type) expected(what);
    return next();
  }
  const Token& expect_op(std::string_view v) {
    if (!op_is(v)) expected(std::string(v));
    return next();
  }
  const Token& expect_name(std::string_view v) {
    if (!name_is(v)) expected(std::string(v));
    return next();
  }
  const Token& expect_block_end() { return expect_type(TokenType::BlockEnd, "end of statement block"); }

  ExprPtr make(Expr::Kind k, int line) { return std::make_unique<Expr>(k, line); }

  // ------------------------------------------------------------------ statements

  NodeList subparse(const EndTokens* end_tokens) {
    NodeList body;
    if (end_tokens) end_stack_.push_back(*end_tokens);
    while (cur().type != TokenType::Eof) {
      const Token& t = cur();
      if (t.type == TokenType::Data) {
        auto n = std::make_unique<Node>(Node::Kind::Text, t.line);
        n->text = t.value;
        body.push_back(std::move(n));
        next();
      } else if (t.type == TokenType::VarBegin) {
        next();
        auto n = std::make_unique<Node>(Node::Kind::Output, cur().line);
        n->expr = parse_tuple(false, true, {}, false, false);
        expect_type(TokenType::VarEnd, "end of print statement");
        body.push_back(std::move(n));
      } else if (t.type == TokenType::BlockBegin) {
        next();
        if (end_tokens) {
          for (const std::string& e : *end_tokens) {
            if (name_is(e)) {
              end_stack_.pop_back();
              return body;
            }
          }
        }
        body.push_back(parse_statement());
        expect_block_end();
      } else {
        fail("unexpected " + describe_token(t));
      }
    }
    if (end_tokens) end_stack_.pop_back();
    return body;
  }

  NodeList parse_statements(const EndTokens& end_tokens, bool drop_needle) {
    skip_op(":");
    expect_block_end();
    NodeList body = subparse(&end_tokens);
    if (cur().type == TokenType::Eof) fail_eof(&end_tokens);
    if (drop_needle) next();
    return body;
  }

  [[noreturn]] void fail_unknown(const std::string* name, const EndTokens* extra, int line) {
    std::vector<EndTokens> stack = end_stack_;
    if (extra) stack.push_back(*extra);
    std::set<std::string> expected_names;
    for (const auto& s : stack) expected_names.insert(s.begin(), s.end());
    std::string msg = name ? "Encountered unknown tag '" + *name + "'." : "Unexpected end of template.";
    if (!stack.empty()) {
      std::string looking;
      for (size_t k = 0; k < stack.back().size(); ++k) {
        if (k) looking += " or ";
        looking += "'" + stack.back()[k] + "'";
      }
      if (name && expected_names.count(*name)) {
        msg += " You probably made a nesting mistake. Jinja is expecting this tag, but currently "
               "looking for " +
               looking + ".";
      } else {
        msg += " Jinja was looking for the following tags: " + looking + ".";
      }
    }
    if (!tag_stack_.empty())
      msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
    fail(msg, line);
  }
  [[noreturn]] void fail_eof(const EndTokens* end_tokens) { fail_unknown(nullptr, end_tokens, cur().line); }

  NodePtr parse_statement() {
    Nest nest(*this);
    const Token& t = cur();
    if (t.type != TokenType::Name) fail("tag name expected", t.line);
    const std::string tag = t.value;
    const int line = t.line;
    static const std::set<std::string, std::less<>> known = {
        "for", "if", "set", "macro", "call", "filter", "with", "print",
        "break", "continue", "generation"};
    if (!known.count(tag)) {
      if (kUnsupportedTags.count(tag))
        fail("the '" + tag + "' tag is not supported in chat templates", line);
      fail_unknown(&tag, nullptr, line);
    }
    tag_stack_.push_back(tag);
    NodePtr n;
    if (tag == "for") n = parse_for();
    else if (tag == "if") n = parse_if();
    else if (tag == "set") n = parse_set();
    else if (tag == "macro") n = parse_macro();
    else if (tag == "call") n = parse_call_block();
    else if (tag == "filter") n = parse_filter_block();
    else if (tag == "with") n = parse_with();
    else if (tag == "print") n = parse_print();
    else if (tag == "generation") n = parse_generation();
    else n = parse_loop_control(tag == "break");
    tag_stack_.pop_back();
    return n;
  }

  NodePtr parse_loop_control(bool is_break) {
    const int line = next().line;
    if (loop_depth_ == 0)
      fail(std::string("'") + (is_break ? "break" : "continue") + "' outside loop", line);
    return std::make_unique<Node>(is_break ? Node::Kind::Break : Node::Kind::Continue, line);
  }

  NodePtr parse_set() {
    const int line = next().line;
    ExprPtr target = parse_assign_target(true, false, {}, true);
    if (skip_op("=")) {
      auto n = std::make_unique<Node>(Node::Kind::Set, line);
      n->target = std::move(target);
      n->expr = parse_tuple(false, true, {}, false, false);
      return n;
    }
    auto n = std::make_unique<Node>(Node::Kind::SetBlock, line);
    n->target = std::move(target);
    n->test = parse_filter(nullptr, false);
    n->body = parse_statements({"endset"}, true);
    return n;
  }

  NodePtr parse_for() {
    const int line = expect_name("for").line;
    auto n = std::make_unique<Node>(Node::Kind::For, line);
    n->target = parse_assign_target(true, false, {"in"}, false);
    expect_name("in");
    n->expr = parse_tuple(false, false, {"recursive"}, false, false);
    if (skip_name("if")) n->test = parse_expression(true);
    n->recursive = skip_name("recursive");
    ++loop_depth_;
    n->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (next().value != "endfor") n->else_body = parse_statements({"endfor"}, true);
    return n;
  }

  NodePtr parse_if() {
    const int line = expect_name("if").line;
    auto n = std::make_unique<Node>(Node::Kind::If, line);
    while (true) {
      ExprPtr test = parse_tuple(false, false, {}, false, false);
      NodeList body = parse_statements({"elif", "else", "endif"}, false);
      n->branches.emplace_back(std::move(test), std::move(body));
      const Token& t = next();
      if (is_name(t, "elif")) continue;
      if (is_name(t, "else")) n->else_body = parse_statements({"endif"}, true);
      break;
    }
    return n;
  }

  NodePtr parse_with() {
    const int line = next().line;
    auto n = std::make_unique<Node>(Node::Kind::With, line);
    while (cur().type != TokenType::BlockEnd) {
      if (!n->targets.empty()) expect_op(",");
      n->targets.push_back(parse_assign_target(true, false, {}, false));
      expect_op("=");
      n->values.push_back(parse_expression(true));
    }
    n->body = parse_statements({"endwith"}, true);
    return n;
  }

  void parse_signature(Node& n) {
    expect_op("(");
    while (!op_is(")")) {
      if (!n.params.empty()) expect_op(",");
      const Token& t = expect_type(TokenType::Name, "name");
      if (is_const_name(t.value)) fail("can't assign to 'const'", t.line);
      n.params.push_back(t.value);
      if (skip_op("=")) {
        n.defaults.push_back(parse_expression(true));
      } else if (!n.defaults.empty()) {
        fail("non-default argument follows default argument");
      }
    }
    expect_op(")");
  }

  // Parses a macro-like body: loops do not continue into it, and caller/varargs/kwargs
  // references are recorded on `n`.
  void parse_function_body(Node& n, const std::string& end_tag) {
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    function_stack_.push_back(&n);
    n.body = parse_statements({end_tag}, true);
    function_stack_.pop_back();
    loop_depth_ = saved_loops;
  }

  NodePtr parse_macro() {
    const int line = next().line;
    auto n = std::make_unique<Node>(Node::Kind::Macro, line);
    const Token& name = expect_type(TokenType::Name, "name");
    if (is_const_name(name.value)) fail("can't assign to 'const'", name.line);
    n->name = name.value;
    parse_signature(*n);
    // Defaults belong to the macro's frame too.
    parse_function_body(*n, "endmacro");
    return n;
  }

  NodePtr parse_call_block() {
    const int line = next().line;
    auto n = std::make_unique<Node>(Node::Kind::CallBlock, line);
    n->name = "caller";
    if (op_is("(")) parse_signature(*n);
    n->expr = parse_expression(true);
    if (n->expr->kind != Expr::Kind::Call) fail("expected call", line);
    parse_function_body(*n, "endcall");
    return n;
  }

  NodePtr parse_filter_block() {
    const int line = next().line;
    auto n = std::make_unique<Node>(Node::Kind::FilterBlock, line);
    n->test = parse_filter(nullptr, true);
    n->body = parse_statements({"endfilter"}, true);
    return n;
  }

  NodePtr parse_print() {
    const int line = next().line;
    // {% print a, b %} outputs each expression.
    auto n = std::make_unique<Node>(Node::Kind::Scope, line);
    bool first = true;
    while (cur().type != TokenType::BlockEnd) {
      if (!first) expect_op(",");
      first = false;
      auto out = std::make_unique<Node>(Node::Kind::Output, cur().line);
      out->expr = parse_expression(true);
      n->body.push_back(std::move(out));
    }
    n->recursive = true;  // marks a print: no scope of its own
    return n;
  }

  NodePtr parse_generation() {
    const int line = next().line;
    auto n = std::make_unique<Node>(Node::Kind::Scope, line);
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;
    n->body = parse_statements({"endgeneration"}, true);
    loop_depth_ = saved_loops;
    return n;
  }

  static bool is_const_name(const std::string& s) {
    return s == "true" || s == "false" || s == "none" || s == "True" || s == "False" ||
           s == "None";
  }

  // ------------------------------------------------------------------ expressions

  bool is_tuple_end(const EndTokens& extra) const {
    if (cur().type == TokenType::VarEnd || cur().type == TokenType::BlockEnd || op_is(")"))
      return true;
    for (const std::string& e : extra)
      if (name_is(e)) return true;
    return false;
  }

  static const char* kind_name(Expr::Kind k) {
    switch (k) {
      case Expr::Kind::Const: return "const";
      case Expr::Kind::List: return "list";
      case Expr::Kind::Dict: return "dict";
      case Expr::Kind::Getattr: return "getattr";
      case Expr::Kind::Getitem: return "getitem";
      case Expr::Kind::Call: return "call";
      default: return "expression";
    }
  }

  void check_assignable(const Expr& e) const {
    if (e.kind == Expr::Kind::Name || e.kind == Expr::Kind::NSRef) return;
    if (e.kind == Expr::Kind::Tuple) {
      for (const auto& x : e.items) check_assignable(*x);
      return;
    }
    fail(std::string("can't assign to '") + kind_name(e.kind) + "'", e.line);
  }

  ExprPtr parse_assign_target(bool with_tuple, bool name_only, const EndTokens& extra,
                              bool with_namespace) {
    ExprPtr target;
    if (name_only) {
      const Token& t = expect_type(TokenType::Name, "name");
      target = make(Expr::Kind::Name, t.line);
      target->name = t.value;
    } else if (with_tuple) {
      target = parse_tuple(true, true, extra, false, with_namespace);
    } else {
      target = parse_primary(with_namespace);
    }
    if (target->kind == Expr::Kind::Name && is_const_name(target->name))
      fail("can't assign to 'const'", target->line);
    check_assignable(*target);
    return target;
  }

  ExprPtr parse_expression(bool with_condexpr) {
    Nest nest(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    int line = cur().line;
    ExprPtr expr1 = parse_or();
    NestMany many(*this);
    while (skip_name("if")) {
      many.add();
      ExprPtr expr2 = parse_or();
      ExprPtr expr3;
      if (skip_name("else")) {
        Nest nest(*this);
        expr3 = parse_condexpr();
      }
      auto n = make(Expr::Kind::CondExpr, line);
      n->a = std::move(expr2);
      n->b = std::move(expr1);
      n->c = std::move(expr3);
      expr1 = std::move(n);
      line = cur().line;
    }
    return expr1;
  }

  ExprPtr parse_or() {
    int line = cur().line;
    ExprPtr left = parse_and();
    NestMany many(*this);
    while (skip_name("or")) {
      many.add();
      auto n = make(Expr::Kind::Or, line);
      n->a = std::move(left);
      n->b = parse_and();
      left = std::move(n);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_and() {
    int line = cur().line;
    ExprPtr left = parse_not();
    NestMany many(*this);
    while (skip_name("and")) {
      many.add();
      auto n = make(Expr::Kind::And, line);
      n->a = std::move(left);
      n->b = parse_not();
      left = std::move(n);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_not() {
    if (name_is("not")) {
      Nest nest(*this);
      const int line = next().line;
      auto n = make(Expr::Kind::Not, line);
      n->a = parse_not();
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr expr = parse_math1();
    std::vector<std::pair<CmpOp, ExprPtr>> ops;
    while (true) {
      CmpOp op;
      if (op_is("==")) op = CmpOp::Eq;
      else if (op_is("!=")) op = CmpOp::Ne;
      else if (op_is("<")) op = CmpOp::Lt;
      else if (op_is("<=")) op = CmpOp::Le;
      else if (op_is(">")) op = CmpOp::Gt;
      else if (op_is(">=")) op = CmpOp::Ge;
      else if (name_is("in")) op = CmpOp::In;
      else if (name_is("not") && is_name(look(), "in")) {
        next();
        op = CmpOp::NotIn;
      } else {
        break;
      }
      next();
      ops.emplace_back(op, parse_math1());
      line = cur().line;
    }
    if (ops.empty()) return expr;
    auto n = make(Expr::Kind::Compare, line);
    n->a = std::move(expr);
    n->ops = std::move(ops);
    return n;
  }

  ExprPtr binary(BinOp op, ExprPtr l, ExprPtr r, int line) {
    auto n = make(Expr::Kind::Binary, line);
    n->bin_op = op;
    n->a = std::move(l);
    n->b = std::move(r);
    return n;
  }

  ExprPtr parse_math1() {
    int line = cur().line;
    ExprPtr left = parse_concat();
    NestMany many(*this);
    while (op_is("+") || op_is("-")) {
      many.add();
      const BinOp op = op_is("+") ? BinOp::Add : BinOp::Sub;
      next();
      ExprPtr right = parse_concat();
      left = binary(op, std::move(left), std::move(right), line);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    args.push_back(parse_math2());
    while (op_is("~")) {
      next();
      args.push_back(parse_math2());
    }
    if (args.size() == 1) return std::move(args[0]);
    auto n = make(Expr::Kind::Concat, line);
    n->items = std::move(args);
    return n;
  }

  ExprPtr parse_math2() {
    int line = cur().line;
    ExprPtr left = parse_pow();
    NestMany many(*this);
    while (op_is("*") || op_is("/") || op_is("//") || op_is("%")) {
      many.add();
      const std::string o = cur().value;
      const BinOp op = o == "*" ? BinOp::Mul
                       : o == "/" ? BinOp::Div
                       : o == "//" ? BinOp::FloorDiv
                                   : BinOp::Mod;
      next();
      ExprPtr right = parse_pow();
      left = binary(op, std::move(left), std::move(right), line);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_pow() {
    int line = cur().line;
    ExprPtr left = parse_unary(true);
    NestMany many(*this);
    while (op_is("**")) {
      many.add();
      next();
      ExprPtr right = parse_unary(true);
      left = binary(BinOp::Pow, std::move(left), std::move(right), line);
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nest nest(*this);
    const int line = cur().line;
    ExprPtr node;
    if (op_is("-") || op_is("+")) {
      const bool neg = op_is("-");
      next();
      node = make(neg ? Expr::Kind::Neg : Expr::Kind::Pos, line);
      node->a = parse_unary(false);
    } else {
      node = parse_primary(false);
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary(bool with_namespace) {
    const Token& t = cur();
    if (t.type == TokenType::Name) {
      next();
      if (t.value == "true" || t.value == "True" || t.value == "false" || t.value == "False") {
        auto n = make(Expr::Kind::Const, t.line);
        n->value = Value::boolean(t.value == "true" || t.value == "True");
        return n;
      }
      if (t.value == "none" || t.value == "None") {
        auto n = make(Expr::Kind::Const, t.line);
        n->value = Value::none();
        return n;
      }
      if (with_namespace && op_is(".")) {
        next();
        const Token& attr = expect_type(TokenType::Name, "name");
        auto n = make(Expr::Kind::NSRef, t.line);
        n->name = t.value;
        n->value = Value::string(attr.value);
        return n;
      }
      auto n = make(Expr::Kind::Name, t.line);
      n->name = t.value;
      note_name(t.value);
      return n;
    }
    if (t.type == TokenType::String) {
      const int line = t.line;
      std::string buf = t.value;
      next();
      while (cur().type == TokenType::String) buf += next().value;
      auto n = make(Expr::Kind::Const, line);
      n->value = Value::string(std::move(buf));
      return n;
    }
    if (t.type == TokenType::Integer || t.type == TokenType::Float) {
      auto n = make(Expr::Kind::Const, t.line);
      n->value = t.type == TokenType::Integer ? Value::integer(t.int_value) : Value::real(t.float_value);
      next();
      return n;
    }
    if (is_op(t, "(")) {
      next();
      ExprPtr n = parse_tuple(false, true, {}, true, false);
      expect_op(")");
      return n;
    }
    if (is_op(t, "[")) return parse_list();
    if (is_op(t, "{")) return parse_dict();
    fail("unexpected '" + describe_token(t) + "'", t.line);
  }

  // Records references to caller/varargs/kwargs for the macros being parsed.
  void note_name(const std::string& name) {
    if (function_stack_.empty()) return;
    for (Node* f : function_stack_) {
      if (name == "caller") f->uses_caller = true;
      if (name == "varargs") f->uses_varargs = true;
      if (name == "kwargs") f->uses_kwargs = true;
    }
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr, const EndTokens& extra,
                      bool explicit_parentheses, bool with_namespace) {
    int line = cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) expect_op(",");
      if (is_tuple_end(extra)) break;
      args.push_back(simplified ? parse_primary(with_namespace) : parse_expression(with_condexpr));
      if (op_is(",")) {
        is_tuple = true;
      } else {
        break;
      }
      line = cur().line;
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parentheses)
        fail("Expected an expression, got '" + describe_token(cur()) + "'");
    }
    auto n = make(Expr::Kind::Tuple, line);
    n->items = std::move(args);
    return n;
  }

  ExprPtr parse_list() {
    const int line = expect_op("[").line;
    auto n = make(Expr::Kind::List, line);
    while (!op_is("]")) {
      if (!n->items.empty()) expect_op(",");
      if (op_is("]")) break;
      n->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return n;
  }

  ExprPtr parse_dict() {
    const int line = expect_op("{").line;
    auto n = make(Expr::Kind::Dict, line);
    while (!op_is("}")) {
      if (!n->items.empty()) expect_op(",");
      if (op_is("}")) break;
      n->items.push_back(parse_expression(true));
      expect_op(":");
      n->items.push_back(parse_expression(true));
    }
    expect_op("}");
    return n;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    NestMany many(*this);
    while (true) {
      many.add();
      if (op_is(".") || op_is("[")) {
        node = parse_subscript(std::move(node));
      } else if (op_is("(")) {
        node = parse_call(std::move(node));
      } else {
        break;
      }
    }
    return node;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    NestMany many(*this);
    while (true) {
      many.add();
      if (op_is("|")) {
        node = parse_filter(std::move(node), false);
      } else if (name_is("is")) {
        node = parse_test(std::move(node));
      } else if (op_is("(")) {
        node = parse_call(std::move(node));
      } else {
        break;
      }
    }
    return node;
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const Token& t = next();
    const int line = t.line;
    if (t.value == ".") {
      const Token& attr = cur();
      next();
      if (attr.type == TokenType::Name) {
        auto n = make(Expr::Kind::Getattr, line);
        n->a = std::move(node);
        n->name = attr.value;
        return n;
      }
      if (attr.type != TokenType::Integer) fail("expected name or number", attr.line);
      auto n = make(Expr::Kind::Getitem, line);
      n->a = std::move(node);
      n->b = make(Expr::Kind::Const, attr.line);
      n->b->value = Value::integer(attr.int_value);
      return n;
    }
    // "["
    std::vector<ExprPtr> args;
    while (!op_is("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto n = make(Expr::Kind::Getitem, line);
    n->a = std::move(node);
    if (args.size() == 1) {
      n->b = std::move(args[0]);
    } else {
      n->b = make(Expr::Kind::Tuple, line);
      n->b->items = std::move(args);
    }
    return n;
  }

  ExprPtr parse_subscribed() {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    if (op_is(":")) {
      next();
      args.push_back(nullptr);
    } else {
      ExprPtr node = parse_expression(true);
      if (!op_is(":")) return node;
      next();
      args.push_back(std::move(node));
    }
    if (op_is(":")) {
      args.push_back(nullptr);
    } else if (!op_is("]") && !op_is(",")) {
      args.push_back(parse_expression(true));
    } else {
      args.push_back(nullptr);
    }
    if (op_is(":")) {
      next();
      if (!op_is("]") && !op_is(",")) {
        args.push_back(parse_expression(true));
      } else {
        args.push_back(nullptr);
      }
    } else {
      args.push_back(nullptr);
    }
    auto n = make(Expr::Kind::Slice, line);
    n->a = std::move(args[0]);
    n->b = std::move(args[1]);
    n->c = std::move(args[2]);
    return n;
  }

  CallSyntax parse_call_args() {
    const int line = expect_op("(").line;
    CallSyntax call;
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) fail("invalid syntax for function call expression", line);
    };
    while (!op_is(")")) {
      if (require_comma) {
        expect_op(",");
        if (op_is(")")) break;
      }
      if (op_is("*")) {
        ensure(!call.dyn_args && !call.dyn_kwargs);
        next();
        call.dyn_args = parse_expression(true);
      } else if (op_is("**")) {
        ensure(!call.dyn_kwargs);
        next();
        call.dyn_kwargs = parse_expression(true);
      } else if (cur().type == TokenType::Name && is_op(look(), "=")) {
        ensure(!call.dyn_kwargs);
        std::string key = cur().value;
        next();
        next();
        call.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!call.dyn_args && !call.dyn_kwargs && call.kwargs.empty());
        call.args.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
    return call;
  }

  ExprPtr parse_call(ExprPtr node) {
    const int line = cur().line;
    auto n = make(Expr::Kind::Call, line);
    n->call = parse_call_args();
    n->a = std::move(node);
    return n;
  }

  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    NestMany many(*this);
    while (op_is("|") || start_inline) {
      many.add();
      if (!start_inline) next();
      const Token& t = expect_type(TokenType::Name, "name");
      const int line = t.line;
      std::string name = t.value;
      while (op_is(".")) {
        next();
        name += "." + expect_type(TokenType::Name, "name").value;
      }
      auto n = make(Expr::Kind::Filter, line);
      n->name = std::move(name);
      if (op_is("(")) n->call = parse_call_args();
      n->a = std::move(node);
      node = std::move(n);
      start_inline = false;
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const int line = next().line;  // "is"
    const bool negated = skip_name("not");
    std::string name = expect_type(TokenType::Name, "name").value;
    while (op_is(".")) {
      next();
      name += "." + expect_type(TokenType::Name, "name").value;
    }
    auto n = make(Expr::Kind::Test, line);
    n->name = std::move(name);
    if (op_is("(")) {
      n->call = parse_call_args();
    } else if ((cur().type == TokenType::Name || cur().type == TokenType::String ||
                cur().type == TokenType::Integer || cur().type == TokenType::Float ||
                op_is("(") || op_is("[") || op_is("{")) &&
               !name_is("else") && !name_is("or") && !name_is("and")) {
      if (name_is("is")) fail("You cannot chain multiple tests with is");
      ExprPtr arg = parse_primary(false);
      arg = parse_postfix(std::move(arg));
      n->call.args.push_back(std::move(arg));
    }
    n->a = std::move(node);
    if (!negated) return n;
    auto neg = make(Expr::Kind::Not, line);
    neg->a = std::move(n);
    return neg;
  }

  // ------------------------------------------------------------------ filter/test check
  // Unknown filters and tests are compile errors, except inside if statements and
  // conditional expressions where Jinja raises only when they are evaluated.

  void check_expr(Expr* e, bool soft) {
    if (!e) return;
    if (e->kind == Expr::Kind::CondExpr) soft = true;
    if (e->kind == Expr::Kind::Filter || e->kind == Expr::Kind::Test) {
      const bool filter = e->kind == Expr::Kind::Filter;
      const bool known = filter ? is_known_filter(e->name) : is_known_test(e->name);
      if (!known) {
        if (!soft)
          fail(std::string("No ") + (filter ? "filter" : "test") + " named '" + e->name + "'.",
               e->line);
        e->unknown = true;
      }
    }
    check_expr(e->a.get(), soft);
    check_expr(e->b.get(), soft);
    check_expr(e->c.get(), soft);
    for (auto& x : e->items) check_expr(x.get(), soft);
    for (auto& x : e->call.args) check_expr(x.get(), soft);
    for (auto& kv : e->call.kwargs) check_expr(kv.second.get(), soft);
    check_expr(e->call.dyn_args.get(), soft);
    check_expr(e->call.dyn_kwargs.get(), soft);
    for (auto& op : e->ops) check_expr(op.second.get(), soft);
  }

  void check_list(NodeList& nodes, bool soft) {
    for (auto& n : nodes) check_node(*n, soft);
  }

  void check_node(Node& n, bool soft) {
    switch (n.kind) {
      case Node::Kind::Text:
      case Node::Kind::Break:
      case Node::Kind::Continue: return;
      case Node::Kind::Output:
      case Node::Kind::Set: check_expr(n.expr.get(), soft); return;
      case Node::Kind::If:
        for (auto& [test, body] : n.branches) {
          check_expr(test.get(), true);
          check_list(body, true);
        }
        check_list(n.else_body, true);
        return;
      case Node::Kind::For:
        check_expr(n.expr.get(), soft);
        check_expr(n.test.get(), false);
        check_list(n.body, false);
        check_list(n.else_body, false);
        return;
      case Node::Kind::SetBlock:
      case Node::Kind::FilterBlock:
        check_expr(n.test.get(), false);
        check_list(n.body, false);
        return;
      case Node::Kind::Macro:
        for (auto& d : n.defaults) check_expr(d.get(), false);
        check_list(n.body, false);
        return;
      case Node::Kind::CallBlock:
        check_expr(n.expr.get(), soft);
        for (auto& d : n.defaults) check_expr(d.get(), false);
        check_list(n.body, false);
        return;
      case Node::Kind::With:
        for (auto& v : n.values) check_expr(v.get(), soft);
        check_list(n.body, false);
        return;
      case Node::Kind::Scope: check_list(n.body, n.recursive ? soft : false); return;
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int nesting_ = 0;
  int loop_depth_ = 0;
  std::vector<EndTokens> end_stack_;
  std::vector<std::string> tag_stack_;
  std::vector<Node*> function_stack_;
};

}  // namespace

std::unique_ptr<Program> parse(const std::string& source) {
  return Parser(tokenize(source)).parse();
}

}  // namespace slm::chat::jinja
