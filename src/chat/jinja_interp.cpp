#include "chat/jinja_interp.h"

#include <algorithm>

#include "chat/jinja.h"
#include "chat/jinja_builtins.h"

namespace slm::chat::jinja {

namespace {

// Macro calls, caller() and recursive loops nest at most this deep.
constexpr int kMaxCallDepth = 100;
// Bound on nested exec()/eval() frames, whatever mix of statements, expressions and calls
// produces them, so that malicious templates end with an error instead of a stack overflow.
constexpr int kMaxEvalDepth = 1000;
constexpr size_t kMaxOutput = kMaxStringBytes;

struct Scope {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Scope> parent;

  const Value* find(const std::string& name) const {
    for (const Scope* s = this; s; s = s->parent.get()) {
      auto it = s->vars.find(name);
      if (it != s->vars.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

ScopePtr child_of(const ScopePtr& parent) {
  auto s = std::make_shared<Scope>();
  s->parent = parent;
  return s;
}

// The scope a macro, caller or recursive loop closes over. The interpreter clears it when
// rendering ends, which breaks the scope -> macro -> scope reference cycle.
struct Closure {
  ScopePtr scope;
};

enum class Flow { Normal, Break, Continue };

class Interpreter {
 public:
  explicit Interpreter(const std::optional<std::tm>& now) : now_(now) {}

  ~Interpreter() {
    for (auto& w : closures_)
      if (auto c = w.lock()) c->scope.reset();
    for (auto& w : objects_)
      if (auto o = w.lock()) o->attrs = DictData();
  }

  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string run(const Program& program, const Value& context) {
    auto globals = std::make_shared<Scope>();
    DictData g = make_globals(now_);
    for (auto& [k, v] : g.entries) globals->vars[k.str()] = v;
    globals->vars["namespace"] = make_function("namespace", [this](CallArgs& a) { return make_namespace(a); });
    auto root = child_of(globals);
    if (context.is_dict()) {
      for (const auto& [k, v] : context.dict().entries)
        if (k.is_string()) root->vars[k.str()] = v;
    }
    std::string out;
    out_ = &out;
    exec_list(program.body, root);
    return out;
  }

 private:
  // RAII guard for the call depth.
  struct CallGuard {
    explicit CallGuard(Interpreter& in) : in_(in) {
      if (++in_.call_depth_ > kMaxCallDepth)
        fail("maximum recursion depth exceeded (calls nested more than {} deep)", kMaxCallDepth);
    }
    ~CallGuard() { --in_.call_depth_; }
    CallGuard(const CallGuard&) = delete;
    CallGuard& operator=(const CallGuard&) = delete;
    Interpreter& in_;
  };

  // Renders into a fresh buffer and returns it.
  template <class F>
  std::string capture(F&& f) {
    std::string buf;
    std::string* saved = out_;
    out_ = &buf;
    try {
      f();
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    return buf;
  }

  void write(std::string_view s) {
    if (out_->size() + s.size() > kMaxOutput) fail("template output exceeds {} bytes", kMaxOutput);
    out_->append(s);
  }

  std::shared_ptr<Closure> new_closure(const ScopePtr& scope) {
    auto c = std::make_shared<Closure>();
    c->scope = scope;
    closures_.push_back(c);
    return c;
  }

  Value make_namespace(CallArgs& a) {
    auto o = std::make_shared<ObjectData>();
    o->type_name = "Namespace";
    o->assignable = true;
    if (a.args.size() > 1) fail("Namespace expected at most 1 argument, got {}", a.args.size());
    if (!a.args.empty()) {
      const Value& init = a.args[0];
      if (init.is_dict()) {
        for (const auto& [k, v] : init.dict().entries) o->attrs.set(k, v);
      } else {
        for (const Value& pair : iterate(init)) {
          const ValueList kv = iterate(pair);
          if (kv.size() != 2)
            fail("dictionary update sequence element has length {}; 2 is required", kv.size());
          o->attrs.set(kv[0], kv[1]);
        }
      }
    }
    for (auto& [k, v] : a.kwargs) o->attrs.set(Value::string(k), v);
    objects_.push_back(o);
    return Value::object(std::move(o));
  }

  // ------------------------------------------------------------------ statements

  Flow exec_list(const NodeList& nodes, const ScopePtr& scope) {
    for (const NodePtr& n : nodes) {
      const Flow f = exec(*n, scope);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  // RAII guard for the evaluation depth.
  struct DepthGuard {
    explicit DepthGuard(Interpreter& in) : in_(in) {
      if (++in_.eval_depth_ > kMaxEvalDepth)
        fail("template evaluation is nested too deeply (more than {} levels)", kMaxEvalDepth);
    }
    ~DepthGuard() { --in_.eval_depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;
    Interpreter& in_;
  };

  Flow exec(const Node& n, const ScopePtr& scope) {
    try {
      DepthGuard guard(*this);
      return exec_inner(n, scope);
    } catch (const EvalError& e) {
      throw TemplateError(e.what(), n.line);
    }
  }

  Flow exec_inner(const Node& n, const ScopePtr& scope) {
    switch (n.kind) {
      case Node::Kind::Text: write(n.text); return Flow::Normal;
      case Node::Kind::Output: exec_output(n, scope); return Flow::Normal;
      case Node::Kind::If: return exec_if(n, scope);
      case Node::Kind::For: exec_for(n, scope); return Flow::Normal;
      case Node::Kind::Set: exec_set(n, scope); return Flow::Normal;
      case Node::Kind::SetBlock: exec_set_block(n, scope); return Flow::Normal;
      case Node::Kind::Macro: scope->vars[n.name] = make_macro(n, scope); return Flow::Normal;
      case Node::Kind::CallBlock: exec_call_block(n, scope); return Flow::Normal;
      case Node::Kind::FilterBlock: exec_filter_block(n, scope); return Flow::Normal;
      case Node::Kind::With: return exec_with(n, scope);
      case Node::Kind::Break: return Flow::Break;
      case Node::Kind::Continue: return Flow::Continue;
      case Node::Kind::Scope:
        if (n.recursive) return exec_list(n.body, scope);  // {% print %}
        exec_list(n.body, child_of(scope));
        return Flow::Normal;
    }
    return Flow::Normal;
  }

  [[gnu::noinline]] void exec_output(const Node& n, const ScopePtr& scope) {
    const Value v = eval(*n.expr, scope);
    if (v.is_string()) {
      write(v.str());
    } else {
      write(to_str(v));
    }
  }

  [[gnu::noinline]] Flow exec_if(const Node& n, const ScopePtr& scope) {
    for (const auto& [test, body] : n.branches)
      if (truthy(eval(*test, scope))) return exec_list(body, scope);
    return exec_list(n.else_body, scope);
  }

  [[gnu::noinline]] void exec_for(const Node& n, const ScopePtr& scope) {
    run_loop(n, eval(*n.expr, scope), scope, 0);
  }

  [[gnu::noinline]] void exec_set(const Node& n, const ScopePtr& scope) {
    assign(*n.target, eval(*n.expr, scope), *scope);
  }

  [[gnu::noinline]] void exec_set_block(const Node& n, const ScopePtr& scope) {
    const ScopePtr inner = child_of(scope);
    Value v = Value::string(capture([&] { exec_list(n.body, inner); }));
    if (n.test) v = eval_filter(*n.test, scope, &v);
    assign(*n.target, v, *scope);
  }

  [[gnu::noinline]] void exec_call_block(const Node& n, const ScopePtr& scope) {
    const Value caller = make_macro(n, scope);
    const Value v = eval_call(*n.expr, scope, &caller);
    write(to_str(v));
  }

  [[gnu::noinline]] void exec_filter_block(const Node& n, const ScopePtr& scope) {
    const ScopePtr inner = child_of(scope);
    const Value body = Value::string(capture([&] { exec_list(n.body, inner); }));
    write(to_str(eval_filter(*n.test, scope, &body)));
  }

  [[gnu::noinline]] Flow exec_with(const Node& n, const ScopePtr& scope) {
    std::vector<Value> values;
    values.reserve(n.values.size());
    for (const auto& v : n.values) values.push_back(eval(*v, scope));
    const ScopePtr inner = child_of(scope);
    for (size_t k = 0; k < n.targets.size(); ++k) assign(*n.targets[k], values[k], *inner);
    return exec_list(n.body, inner);
  }

  void assign(const Expr& target, const Value& v, Scope& scope) {
    switch (target.kind) {
      case Expr::Kind::Name: scope.vars[target.name] = v; return;
      case Expr::Kind::Tuple: {
        const ValueList items = iterate(v);
        const size_t want = target.items.size();
        if (items.size() < want)
          fail("not enough values to unpack (expected {}, got {})", want, items.size());
        if (items.size() > want) fail("too many values to unpack (expected {})", want);
        for (size_t k = 0; k < want; ++k) assign(*target.items[k], items[k], scope);
        return;
      }
      case Expr::Kind::NSRef: {
        const Value* ns = scope.find(target.name);
        if (!ns || !ns->is_object() || !ns->object().assignable)
          fail("cannot assign attribute on non-namespace object");
        ns->object().attrs.set(target.value, v);
        return;
      }
      default: fail("can't assign to this expression");
    }
  }

  void run_loop(const Node& n, const Value& iterable, const ScopePtr& outer, int depth0) {
    ValueList items = iterate(iterable);
    if (n.test) {
      ValueList kept;
      for (Value& item : items) {
        const ScopePtr s = child_of(outer);
        assign(*n.target, item, *s);
        if (truthy(eval(*n.test, s))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const int64_t len = static_cast<int64_t>(items.size());
    auto last_changed = std::make_shared<std::optional<Value>>();
    NativeFn recurse;
    if (n.recursive) {
      auto closure = new_closure(outer);
      const Node* node = &n;
      recurse = [this, node, closure, depth0](CallArgs& a) -> Value {
        if (a.args.size() != 1 || !a.kwargs.empty()) fail("loop() takes exactly one argument");
        CallGuard guard(*this);
        const ScopePtr scope = closure->scope;
        if (!scope) fail("the recursive loop is no longer active");
        return Value::string(capture([&] { run_loop(*node, a.args[0], scope, depth0 + 1); }));
      };
    } else {
      recurse = [](CallArgs&) -> Value {
        fail("The loop must have the 'recursive' marker to be called recursively.");
      };
    }
    for (int64_t i = 0; i < len; ++i) {
      const ScopePtr s = child_of(outer);
      assign(*n.target, items[static_cast<size_t>(i)], *s);
      s->vars["loop"] = make_loop(items, i, depth0, last_changed, recurse);
      if (exec_list(n.body, s) == Flow::Break) break;
    }
    if (len == 0 && !n.else_body.empty()) exec_list(n.else_body, child_of(outer));
  }

  static Value make_loop(const ValueList& items, int64_t i, int depth0,
                         const std::shared_ptr<std::optional<Value>>& last_changed,
                         const NativeFn& recurse) {
    const int64_t len = static_cast<int64_t>(items.size());
    auto o = std::make_shared<ObjectData>();
    o->type_name = "LoopContext";
    DictData& a = o->attrs;
    a.set(Value::string("index0"), Value::integer(i));
    a.set(Value::string("index"), Value::integer(i + 1));
    a.set(Value::string("revindex0"), Value::integer(len - i - 1));
    a.set(Value::string("revindex"), Value::integer(len - i));
    a.set(Value::string("first"), Value::boolean(i == 0));
    a.set(Value::string("last"), Value::boolean(i == len - 1));
    a.set(Value::string("length"), Value::integer(len));
    a.set(Value::string("depth0"), Value::integer(depth0));
    a.set(Value::string("depth"), Value::integer(depth0 + 1));
    a.set(Value::string("previtem"), i > 0 ? items[static_cast<size_t>(i - 1)]
                                           : Value::undefined("there is no previous item"));
    a.set(Value::string("nextitem"), i + 1 < len ? items[static_cast<size_t>(i + 1)]
                                                 : Value::undefined("there is no next item"));
    a.set(Value::string("cycle"),
          make_function(
              "cycle",
              [i](CallArgs& c) -> Value {
                if (c.args.empty()) fail("no items for cycling given");
                return c.args[static_cast<size_t>(i) % c.args.size()];
              },
              FunctionData::Kind::Method));
    a.set(Value::string("changed"),
          make_function(
              "changed",
              [last_changed](CallArgs& c) -> Value {
                Value v = Value::tuple(c.args);
                if (*last_changed && equals(**last_changed, v)) return Value::boolean(false);
                *last_changed = std::move(v);
                return Value::boolean(true);
              },
              FunctionData::Kind::Method));
    o->call = recurse;
    return Value::object(std::move(o));
  }

  Value make_macro(const Node& n, const ScopePtr& scope) {
    auto closure = new_closure(scope);
    const Node* node = &n;
    return make_function(
        n.name, [this, node, closure](CallArgs& a) { return call_macro(*node, *closure, a); },
        FunctionData::Kind::Macro);
  }

  Value call_macro(const Node& n, const Closure& closure, CallArgs& a) {
    CallGuard guard(*this);
    if (!closure.scope) fail("macro '{}' is no longer callable", n.name);
    const ScopePtr scope = child_of(closure.scope);
    const size_t nparams = n.params.size();
    std::vector<std::optional<Value>> bound(nparams);
    const size_t npos = std::min(a.args.size(), nparams);
    for (size_t k = 0; k < npos; ++k) bound[k] = a.args[k];
    auto pop_kwarg = [&](const std::string& name) -> std::optional<Value> {
      for (auto it = a.kwargs.begin(); it != a.kwargs.end(); ++it) {
        if (it->first == name) {
          Value v = std::move(it->second);
          a.kwargs.erase(it);
          return v;
        }
      }
      return std::nullopt;
    };
    bool found_caller = false;
    if (npos != nparams) {
      for (size_t k = npos; k < nparams; ++k) {
        bound[k] = pop_kwarg(n.params[k]);
        if (n.params[k] == "caller") found_caller = true;
      }
    } else {
      found_caller = std::find(n.params.begin(), n.params.end(), "caller") != n.params.end();
    }
    if (n.uses_caller && !found_caller) {
      std::optional<Value> caller = pop_kwarg("caller");
      scope->vars["caller"] = caller && !caller->is_none() ? *caller : Value::undefined("No caller defined");
    }
    if (n.uses_kwargs) {
      DictData d;
      for (auto& [k, v] : a.kwargs) d.set(Value::string(k), v);
      scope->vars["kwargs"] = Value::dict(std::move(d));
    } else if (!a.kwargs.empty()) {
      for (auto& kv : a.kwargs)
        if (kv.first == "caller")
          fail("macro '{}' was invoked with two values for the special caller argument. This is "
               "most likely a bug.",
               n.name);
      fail("macro '{}' takes no keyword argument '{}'", n.name, a.kwargs.front().first);
    }
    if (n.uses_varargs) {
      ValueList rest;
      for (size_t k = nparams; k < a.args.size(); ++k) rest.push_back(a.args[k]);
      scope->vars["varargs"] = Value::tuple(std::move(rest));
    } else if (a.args.size() > nparams) {
      fail("macro '{}' takes not more than {} argument(s)", n.name, nparams);
    }
    const size_t first_default = nparams - n.defaults.size();
    for (size_t k = 0; k < nparams; ++k) {
      if (bound[k]) {
        scope->vars[n.params[k]] = *bound[k];
      } else if (k >= first_default) {
        scope->vars[n.params[k]] = eval(*n.defaults[k - first_default], scope);
      } else {
        scope->vars[n.params[k]] =
            Value::undefined(fmt::format("parameter '{}' was not provided", n.params[k]));
      }
    }
    return Value::string(capture([&] { exec_list(n.body, scope); }));
  }

  // ------------------------------------------------------------------ expressions

  Value eval(const Expr& e, const ScopePtr& scope) {
    try {
      DepthGuard guard(*this);
      return eval_inner(e, scope);
    } catch (const EvalError& err) {
      throw TemplateError(err.what(), e.line);
    }
  }

  CallArgs eval_args(const CallSyntax& call, const ScopePtr& scope) {
    CallArgs a;
    a.args.reserve(call.args.size());
    for (const auto& x : call.args) a.args.push_back(eval(*x, scope));
    for (const auto& [k, x] : call.kwargs) a.kwargs.emplace_back(k, eval(*x, scope));
    if (call.dyn_args) {
      for (Value& v : iterate(eval(*call.dyn_args, scope))) a.args.push_back(std::move(v));
    }
    if (call.dyn_kwargs) {
      const Value d = eval(*call.dyn_kwargs, scope);
      if (!d.is_dict()) fail("argument after ** must be a mapping, not {}", type_name(d));
      for (const auto& [k, v] : d.dict().entries) {
        if (!k.is_string()) fail("keywords must be strings");
        a.kwargs.emplace_back(k.str(), v);
      }
    }
    return a;
  }

  Value call_value(const Value& f, CallArgs& args) {
    if (f.is_undefined()) raise_undefined(f);
    if (f.is_function()) {
      // Builtins like map/select do not recurse into user code; macros guard themselves.
      return f.function().fn(args);
    }
    if (f.is_object() && f.object().call) return f.object().call(args);
    fail("'{}' object is not callable", type_name(f));
  }

  Value eval_call(const Expr& e, const ScopePtr& scope, const Value* caller) {
    const Value callee = eval(*e.a, scope);
    CallArgs args = eval_args(e.call, scope);
    if (caller) args.kwargs.emplace_back("caller", *caller);
    return call_value(callee, args);
  }

  // A filter; `block` is the input when the chain starts with no expression
  // ({% filter %} and {% set x | f %} blocks).
  Value eval_filter(const Expr& e, const ScopePtr& scope, const Value* block) {
    try {
      Value input;
      if (!e.a) {
        input = *block;
      } else if (e.a->kind == Expr::Kind::Filter && block) {
        input = eval_filter(*e.a, scope, block);
      } else {
        input = eval(*e.a, scope);
      }
      CallArgs args = eval_args(e.call, scope);
      if (e.unknown) fail("No filter named '{}' found.", e.name);
      return apply_filter(e.name, input, args);
    } catch (const EvalError& err) {
      throw TemplateError(err.what(), e.line);
    }
  }

  // The dispatcher stays small: each case with locals lives in its own non-inlined function,
  // so that deep recursion through eval() uses little stack per level.
  Value eval_inner(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case Expr::Kind::Const: return e.value;
      case Expr::Kind::Name: return eval_name(e, scope);
      case Expr::Kind::List:
      case Expr::Kind::Tuple: return eval_sequence(e, scope);
      case Expr::Kind::Dict: return eval_dict(e, scope);
      case Expr::Kind::Getattr: return eval_getattr(e, scope);
      case Expr::Kind::Getitem: return eval_getitem(e, scope);
      case Expr::Kind::Slice: fail("slice outside of a subscript");
      case Expr::Kind::Call: return eval_call(e, scope, nullptr);
      case Expr::Kind::Filter: return eval_filter(e, scope, nullptr);
      case Expr::Kind::Test: return eval_test(e, scope);
      case Expr::Kind::Neg:
      case Expr::Kind::Pos:
      case Expr::Kind::Not: return eval_unary(e, scope);
      case Expr::Kind::Binary: return eval_binary(e, scope);
      case Expr::Kind::And:
      case Expr::Kind::Or: return eval_logic(e, scope);
      case Expr::Kind::Concat: return eval_concat(e, scope);
      case Expr::Kind::Compare: return eval_compare(e, scope);
      case Expr::Kind::CondExpr: return eval_cond(e, scope);
      case Expr::Kind::NSRef: fail("namespace reference outside of an assignment");
    }
    fail("unsupported expression");
  }

  [[gnu::noinline]] Value eval_name(const Expr& e, const ScopePtr& scope) {
    if (const Value* v = scope->find(e.name)) return *v;
    return Value::undefined(fmt::format("'{}' is undefined", e.name));
  }

  [[gnu::noinline]] Value eval_sequence(const Expr& e, const ScopePtr& scope) {
    ValueList items;
    items.reserve(e.items.size());
    for (const auto& x : e.items) items.push_back(eval(*x, scope));
    return e.kind == Expr::Kind::List ? Value::list(std::move(items))
                                      : Value::tuple(std::move(items));
  }

  [[gnu::noinline]] Value eval_dict(const Expr& e, const ScopePtr& scope) {
    DictData d;
    for (size_t k = 0; k + 1 < e.items.size(); k += 2) {
      Value key = eval(*e.items[k], scope);
      d.set(std::move(key), eval(*e.items[k + 1], scope));
    }
    return Value::dict(std::move(d));
  }

  [[gnu::noinline]] Value eval_getattr(const Expr& e, const ScopePtr& scope) {
    return get_attr(eval(*e.a, scope), e.name);
  }

  [[gnu::noinline]] Value eval_getitem(const Expr& e, const ScopePtr& scope) {
    const Value obj = eval(*e.a, scope);
    if (e.b->kind == Expr::Kind::Slice) {
      const Expr& s = *e.b;
      const Value start = s.a ? eval(*s.a, scope) : Value::none();
      const Value stop = s.b ? eval(*s.b, scope) : Value::none();
      const Value step = s.c ? eval(*s.c, scope) : Value::none();
      return get_slice(obj, start, stop, step);
    }
    return get_item(obj, eval(*e.b, scope));
  }

  [[gnu::noinline]] Value eval_test(const Expr& e, const ScopePtr& scope) {
    const Value input = eval(*e.a, scope);
    CallArgs args = eval_args(e.call, scope);
    if (e.unknown) fail("No test named '{}' found.", e.name);
    return Value::boolean(apply_test(e.name, input, args));
  }

  [[gnu::noinline]] Value eval_unary(const Expr& e, const ScopePtr& scope) {
    const Value v = eval(*e.a, scope);
    if (e.kind == Expr::Kind::Not) return Value::boolean(!truthy(v));
    return unary_op(e.kind == Expr::Kind::Neg ? '-' : '+', v);
  }

  [[gnu::noinline]] Value eval_binary(const Expr& e, const ScopePtr& scope) {
    const Value l = eval(*e.a, scope);
    const Value r = eval(*e.b, scope);
    return binary_op(e.bin_op, l, r);
  }

  [[gnu::noinline]] Value eval_logic(const Expr& e, const ScopePtr& scope) {
    Value l = eval(*e.a, scope);
    const bool t = truthy(l);
    if (e.kind == Expr::Kind::And) return t ? eval(*e.b, scope) : l;
    return t ? l : eval(*e.b, scope);
  }

  [[gnu::noinline]] Value eval_concat(const Expr& e, const ScopePtr& scope) {
    std::string s;
    for (const auto& x : e.items) {
      const Value v = eval(*x, scope);
      std::string converted;
      const std::string& part = v.is_string() ? v.str() : (converted = to_str(v));
      if (s.size() + part.size() > kMaxOutput) fail("string exceeds {} bytes", kMaxOutput);
      s += part;
    }
    return Value::string(std::move(s));
  }

  [[gnu::noinline]] Value eval_compare(const Expr& e, const ScopePtr& scope) {
    Value left = eval(*e.a, scope);
    for (const auto& [op, x] : e.ops) {
      Value right = eval(*x, scope);
      if (!compare_op(op, left, right)) return Value::boolean(false);
      left = std::move(right);
    }
    return Value::boolean(true);
  }

  [[gnu::noinline]] Value eval_cond(const Expr& e, const ScopePtr& scope) {
    if (truthy(eval(*e.a, scope))) return eval(*e.b, scope);
    if (e.c) return eval(*e.c, scope);
    return Value::undefined(fmt::format(
        "the inline if-expression on line {} evaluated to false and no else section was "
        "defined.",
        e.line));
  }

  static bool compare_op(CmpOp op, const Value& l, const Value& r) {
    switch (op) {
      case CmpOp::Eq: return equals(l, r);
      case CmpOp::Ne: return !equals(l, r);
      case CmpOp::In: return contains(r, l);
      case CmpOp::NotIn: return !contains(r, l);
      default: break;
    }
    if (l.is_undefined()) raise_undefined(l);
    if (r.is_undefined()) raise_undefined(r);
    const char* sym = op == CmpOp::Lt ? "<" : op == CmpOp::Le ? "<=" : op == CmpOp::Gt ? ">" : ">=";
    const std::partial_ordering c = compare(l, r, sym);
    switch (op) {
      case CmpOp::Lt: return c < 0;
      case CmpOp::Le: return c <= 0;
      case CmpOp::Gt: return c > 0;
      default: return c >= 0;
    }
  }

  std::optional<std::tm> now_;
  std::string* out_ = nullptr;
  int call_depth_ = 0;
  int eval_depth_ = 0;
  std::vector<std::weak_ptr<Closure>> closures_;
  std::vector<std::weak_ptr<ObjectData>> objects_;
};

}  // namespace

std::string render_program(const Program& program, const Value& context,
                           const std::optional<std::tm>& now) {
  Interpreter in(now);
  return in.run(program, context);
}

}  // namespace slm::chat::jinja
