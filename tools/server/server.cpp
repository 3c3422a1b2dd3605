#include "server.h"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "core/error.h"
#include "core/gguf.h"
#include "core/ollama_store.h"
#include "core/whole_file.h"
#include "metrics.h"
#include "native_api.h"
#include "ollama_api.h"
#include "models/lora.h"
#include "models/model.h"
#include "openai.h"
#include "rag/search.h"
#include "rag/store.h"
#include "rag_api.h"
#include "runtime/embedder.h"
#include "runtime/chat_prompt.h"
#include "runtime/infill.h"
#include "runtime/reasoning.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"
#include "runtime/speculative.h"
#include "runtime/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace slm::server {

namespace {

using clock = std::chrono::steady_clock;

// Bodies above this are refused with 413 before they are read whole.
constexpr size_t kMaxBody = 8u << 20;

// What the request log line needs from a handler. httplib runs a request's handler, its
// streamed body and the logger on one thread, so a thread-local record ties them together.
struct RequestLog {
  clock::time_point start;
  int prompt_tokens = -1, generated_tokens = -1;
};
thread_local RequestLog t_log;

// SIGINT/SIGTERM only write a byte to this pipe; a thread reads it and shuts down in order.
int g_signal_pipe[2] = {-1, -1};
extern "C" void on_signal(int sig) {
  const char c = sig > 0 ? 1 : 0;
  [[maybe_unused]] ssize_t n = ::write(g_signal_pipe[1], &c, 1);
}

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
}

// The state a server shares with its handlers.
struct State {
  ServerOptions opts;
  std::string model_id;
  std::atomic<bool> ready{false};
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<Model> draft;  // --draft-model
  std::optional<ChatPrompt> chat;
  std::string chat_template;  // its text, for GET /props
  std::string chat_error;  // why chat completions cannot be served, when they cannot
  std::unique_ptr<BatchScheduler> scheduler;
  std::shared_ptr<LoraSet> lora;  // the --lora adapters (null: none)
  Metrics metrics;
  int64_t created = 0;
  // Documents: an embedding model and an index, each optional. One request at a time uses them
  // (an Embedder is single-threaded scratch, the store one SQLite connection): rag_mu.
  std::unique_ptr<Model> embed_model;
  std::unique_ptr<Embedder> embedder;
  std::string embed_model_id;
  std::unique_ptr<rag::Store> store;
  std::unique_ptr<rag::Searcher> searcher;
  std::mutex rag_mu;
  // Shutdown: new completions are refused once `stopping` is set, and the server stops
  // listening only when no completion is being written any more (in_flight == 0), so that
  // every stream ends with its final chunk and [DONE].
  std::atomic<bool> stopping{false};
  std::atomic<int> in_flight{0};
};

// Counts a completion from its start until its response is written (or abandoned).
struct InFlight {
  explicit InFlight(State& st) : st_(&st) { st.in_flight.fetch_add(1); }
  ~InFlight() { if (st_) st_->in_flight.fetch_sub(1); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  State* st_;
};

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = {},
                const std::string& code = {}) {
  res.status = status;
  res.set_content(dump(error_body(status, message, param, code)), "application/json");
}

void send_json(httplib::Response& res, const json& j) { res.set_content(dump(j), "application/json"); }

// A request that failed while generating: status and error body. A grammar found too
// ambiguous only once matching reaches it (more ways through it at once than the matcher
// keeps) is the request's fault: 400, as a grammar refused at parse time is; anything else is
// the server's: 500.
std::pair<int, json> generation_error(const std::string& error) {
  if (error.rfind("grammar: ", 0) == 0)
    return {400, error_body(400, "the request's grammar (or schema) failed while generating: " + error, "grammar",
                            "invalid_grammar")};
  return {500, error_body(500, "generation failed: " + error, {}, "generation_error")};
}

void send_generation_error(httplib::Response& res, const std::string& error) {
  const auto [status, body] = generation_error(error);
  res.status = status;
  res.set_content(dump(body), "application/json");
}

// The chat prompt, with the tools shown the way the template expects (runtime/tool_calls.h),
// and the grammar a tool-mode reply must follow set on the request. Throws ApiError.
std::string render_chat_messages(const ChatPrompt& chat, CompletionRequest& r) {
  bool tool_history = false;
  for (const auto& m : r.messages) tool_history = tool_history || m["role"] == "tool" || m.contains("tool_calls");
  if (r.tools.empty() && !tool_history) return chat.render(r.messages, nullptr, r.template_kwargs);
  const ToolFormat f = chat.tool_format();
  const std::vector<ToolSpec> offered = r.tool_mode() ? r.tools : std::vector<ToolSpec>{};
  if (r.tool_mode()) {
    const bool required = r.tool_choice == "required" || r.tool_choice == "function";
    std::vector<ToolSpec> callable;
    for (const ToolSpec& t : r.tools)
      if (r.tool_choice != "function" || t.name == r.tool_choice_name) callable.push_back(t);
    if (required || f == ToolFormat::Generic) {
      try {
        r.gen.grammar = tool_reply_grammar(f, callable, required, r.parallel_tool_calls);
      } catch (const Error& e) {
        throw ApiError(400, std::string("'tools': ") + e.what(), "tools", "unsupported_schema");
      }
    }
  }
  const auto messages = messages_for_template(f, r.messages, offered);
  if (f == ToolFormat::Generic || offered.empty()) return chat.render(messages, nullptr, r.template_kwargs);
  const auto tools = tools_for_template(offered);
  return chat.render(messages, &tools, r.template_kwargs);
}

std::string render_chat(const ChatPrompt& chat, CompletionRequest& r) {
  std::string prompt = render_chat_messages(chat, r);
  // A reply held to a grammar (a schema, a tool call) is that text from its first token, even
  // after a template that opened <think>: nothing of it is reasoning.
  r.reasoning_open = prompt_opens_reasoning(prompt) && !r.gen.grammar;
  return prompt;
}

// Builds the generation request (prompt tokens and their check against the context) and
// submits it. Throws ApiError.
std::shared_ptr<RequestHandle> submit(State& st, CompletionRequest& r) {
  std::vector<int32_t> prompt;
  const int64_t n_ctx = st.scheduler->n_ctx();
  try {
    if (r.fill) {
      if (const std::string why = infill_unsupported(*st.tok); !why.empty()) {
        if (r.infill) throw ApiError(501, why, {}, "fim_not_supported", "not_supported_error");
        throw ApiError(400, "'suffix': " + why, "suffix", "fim_not_supported");
      }
      InfillPrompt p = infill_prompt(*st.tok, *r.fill, InfillBudget::for_reply(n_ctx, r.gen.max_tokens));
      r.fill_truncated = p.truncated();
      prompt = std::move(p.tokens);
    } else if (r.chat) {
      if (!st.chat) throw ApiError(400, st.chat_error, "messages", "no_chat_template");
      prompt = st.chat->tokenize(render_chat(*st.chat, r));
    } else if (!r.prompt_ids.empty()) {
      for (const int32_t id : r.prompt_ids)
        if (id >= st.tok->n_vocab())
          throw ApiError(400, fmt::format("'prompt' holds token id {}, outside this model's vocabulary (0..{})", id,
                                          st.tok->n_vocab() - 1), "prompt", "invalid_value");
      prompt = r.prompt_ids;
    } else {
      prompt = st.tok->encode(r.prompt, /*add_special=*/true, r.parse_special);
    }
  } catch (const Error& e) {
    throw ApiError(400, e.what(), r.chat ? "messages" : "prompt");
  }
  if (!r.logit_bias.is_null()) r.gen.sampling.logit_bias = resolve_logit_bias(r.logit_bias, *st.tok);
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  // With --context-shift the text may outgrow the context: only the prompt must fit.
  if (r.gen.max_tokens > 0 && n_prompt + r.gen.max_tokens > n_ctx && !st.opts.context_shift)
    throw ApiError(400,
                   fmt::format("the prompt has {} tokens and max_tokens is {}: together {}, more than the context of "
                               "{} tokens per request; shorten the prompt, lower max_tokens, or start the server "
                               "with a larger -c",
                               n_prompt, r.gen.max_tokens, n_prompt + r.gen.max_tokens, n_ctx),
                   "max_tokens", "context_length_exceeded");
  if (n_prompt >= n_ctx)
    throw ApiError(400,
                   fmt::format("the prompt has {} tokens but the context holds {} per request; shorten the prompt or "
                               "start the server with a larger -c",
                               n_prompt, n_ctx),
                   r.chat ? "messages" : "prompt", "context_length_exceeded");
  t_log.prompt_tokens = static_cast<int>(n_prompt);
  r.gen.prompt = std::move(prompt);
  auto handle = std::make_shared<RequestHandle>();
  switch (st.scheduler->submit(std::move(r.gen), handle)) {
    case Scheduler::Submit::Accepted: return handle;
    case Scheduler::Submit::QueueFull:
      throw ApiError(503, fmt::format("the server is busy: {} requests are running and {} waiting; retry shortly",
                                      st.opts.n_parallel, st.opts.max_queue),
                     {}, "queue_full");
    case Scheduler::Submit::ShuttingDown: break;
  }
  throw ApiError(503, "the server is shutting down", {}, "shutting_down");
}

// A request's whole answer, for the responses that are not streamed: its text, log-probabilities
// and the finish (error, counts, timings).
struct WholeAnswer {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  RequestEvents fin;
};
WholeAnswer wait_whole(RequestHandle& handle) {
  WholeAnswer w;
  for (;;) {
    RequestEvents ev = handle.wait(std::chrono::milliseconds(250));
    w.text += ev.text;
    for (auto& l : ev.logprobs) w.logprobs.push_back(std::move(l));
    if (!ev.finished) continue;
    t_log.generated_tokens = ev.completion_tokens;
    w.fin = std::move(ev);
    return w;
  }
}

// A completion may start: the server is not shutting down and the model is loaded. Counts it in
// flight until the returned token is released (its response written or abandoned).
std::shared_ptr<InFlight> start_request(State& st) {
  if (st.stopping) throw ApiError(503, "the server is shutting down", {}, "shutting_down");
  if (!st.ready) throw ApiError(503, "the model is still loading; retry shortly", {}, "loading");
  return std::make_shared<InFlight>(st);
}

// What each streamed answer (OpenAI's, llama.cpp's, ollama's) keeps between calls of its content
// provider: the request, when the stream last wrote (for the keep-alive comments), and its place
// among the requests in flight, released with the stream.
struct StreamState {
  std::shared_ptr<RequestHandle> handle;
  clock::time_point last_write = clock::now();
  std::shared_ptr<InFlight> in_flight;
  // The next events, waiting up to 250 ms; the log line of a stream the client left still counts
  // its tokens.
  RequestEvents next() {
    RequestEvents ev = handle->wait(std::chrono::milliseconds(250));
    t_log.generated_tokens = std::max(t_log.generated_tokens, ev.completion_tokens);
    return ev;
  }
  // Writes bytes; false, with the generation stopped and its slot freed, when the client left.
  bool send(httplib::DataSink& sink, const std::string& bytes) {
    if (!sink.write(bytes.data(), bytes.size())) {
      handle->cancel();
      return false;
    }
    last_write = clock::now();
    return true;
  }
};

// Streams `state`'s answer as `type`: provide(state, sink) writes what is there on each call
// (false: stop); a stream closed early stops its generation.
template <class State, class Provide>
void stream_response(httplib::Response& res, const char* type, std::shared_ptr<State> state, Provide provide) {
  res.set_chunked_content_provider(
      type, [state, provide](size_t, httplib::DataSink& sink) { return provide(*state, sink); },
      [state](bool success) {
        if (!success) state->handle->cancel();
        state->in_flight.reset();
      });
}

// /completion's and /infill's answer in llama.cpp's shape: one JSON object, or (stream)
// server-sent events {"content": ..., "stop": false} and a last one with stop true and the
// counts (no [DONE]).
void send_native(const std::shared_ptr<RequestHandle>& handle, const ResponseMeta& meta, bool stream, bool truncated,
                 const std::shared_ptr<InFlight>& in_flight, httplib::Response& res) {
  struct NativeStream : StreamState {
    ResponseMeta meta;
    bool truncated = false;
  };
  if (!stream) {
    const WholeAnswer w = wait_whole(*handle);
    if (w.fin.finish_reason == "error") send_generation_error(res, w.fin.error);
    else send_json(res, native_response(meta, w.text, &w.fin, truncated));
    return;
  }
  auto f = std::make_shared<NativeStream>();
  f->handle = handle;
  f->meta = meta;
  f->truncated = truncated;
  f->in_flight = in_flight;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  stream_response(res, "text/event-stream", f, [](NativeStream& f, httplib::DataSink& sink) {
    auto write = [&](const json& j) { return f.send(sink, "data: " + dump(j) + "\n\n"); };
    RequestEvents ev = f.next();
    if (!ev.text.empty() && !write(native_response(f.meta, ev.text, nullptr, false))) return false;
    if (!ev.finished) {
      if (ev.text.empty() && clock::now() - f.last_write > std::chrono::seconds(2) && !f.send(sink, ": waiting\n\n"))
        return false;
      return true;
    }
    if (ev.finish_reason == "error") {
      if (!write(generation_error(ev.error).second)) return false;
    } else if (!write(native_response(f.meta, "", &ev, f.truncated))) {
      return false;
    }
    sink.done();
    return true;
  });
}

void handle_completion(State& st, const std::string& body, httplib::Response& res, Endpoint endpoint) {
  auto in_flight = start_request(st);
  const bool chat = endpoint == Endpoint::Chat;
  CompletionRequest r = parse_completion_request(body, endpoint);
  for (const auto& [id, scale] : r.gen.lora) {
    const size_t n = st.lora ? st.lora->adapters.size() : 0;
    if (id < 0 || static_cast<size_t>(id) >= n)
      throw ApiError(400, n == 0 ? std::string("'lora': this server has no LoRA adapters (start it with --lora FILE)")
                                 : fmt::format("'lora': adapter id {} does not exist (ids 0..{}, see GET /lora-adapters)", id, n - 1),
                     "lora");
  }
  ResponseMeta meta{random_id(chat ? "chatcmpl-" : "cmpl-"), st.model_id, static_cast<int64_t>(std::time(nullptr)), chat};
  const bool want_logprobs = r.logprobs;
  // Tool mode: the reply is read back as calls once it is whole (streamed: its words go first).
  const bool tool_mode = r.chat && r.tool_mode();
  const ToolFormat tool_format = st.chat ? st.chat->tool_format() : ToolFormat::Generic;
  std::shared_ptr<RequestHandle> handle = submit(st, r);
  if (r.native) {
    send_native(handle, meta, r.stream, r.fill_truncated, in_flight, res);
    return;
  }
  // A thinking model's <think> part goes to reasoning_content (llama-server's
  // --reasoning-format deepseek, its default), unless the request or the server says "none".
  const std::string& format = r.reasoning_format.empty() ? st.opts.reasoning_format : r.reasoning_format;
  const bool reasoning = chat && format != "none";

  if (!r.stream) {
    const WholeAnswer w = wait_whole(*handle);
    const ReasoningSplitter::Delta split =
        reasoning ? ReasoningSplitter::split(w.text, r.reasoning_open) : ReasoningSplitter::Delta{{}, w.text};
    if (w.fin.finish_reason == "error") {
      send_generation_error(res, w.fin.error);
    } else if (tool_mode) {
      const ToolReply reply = read_tool_reply(tool_format, split.content, r.tools, w.fin.finish_reason == "stop");
      send_json(res, full_response(meta, split.content, w.logprobs, want_logprobs, w.fin, &reply, split.reasoning));
    } else {
      send_json(res, full_response(meta, r.echo ? r.prompt + w.text : split.content, w.logprobs, want_logprobs, w.fin,
                                   nullptr, split.reasoning));
    }
    return;
  }

  struct Stream : StreamState {
    ResponseMeta meta;
    bool include_usage = false, first = true;
    size_t offset = 0;
    bool tool_mode = false;
    std::string echo;  // completions with echo: the prompt, sent first
    std::optional<ToolReplyStream> tool_stream;  // tool mode: content streams, calls come whole
    std::optional<ReasoningSplitter> reasoning;    // <think> text as reasoning_content
  };
  auto s = std::make_shared<Stream>();
  s->handle = handle;
  s->meta = meta;
  s->include_usage = r.include_usage;
  if (r.echo) s->echo = r.prompt;
  s->in_flight = in_flight;
  s->tool_mode = tool_mode;
  if (tool_mode) s->tool_stream.emplace(tool_format, r.tools);
  if (reasoning) s->reasoning.emplace(r.reasoning_open);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  stream_response(res, "text/event-stream", s, [](Stream& s, httplib::DataSink& sink) {
    auto write = [&](const std::string& payload) { return s.send(sink, "data: " + payload + "\n\n"); };
    if (std::exchange(s.first, false)) {
      if (s.meta.chat && !write(dump(stream_chunk(s.meta, "", nullptr, true, "", s.include_usage, 0))))
        return false;
      if (!s.echo.empty()) {  // completions with echo: the prompt first
        if (!write(dump(stream_chunk(s.meta, s.echo, nullptr, false, "", s.include_usage, 0)))) return false;
        s.offset = s.echo.size();
      }
    }
    RequestEvents ev = s.next();
    if (s.reasoning) {  // the reasoning streams on its own; the rest goes on as the content
      ReasoningSplitter::Delta d = s.reasoning->push(ev.text, ev.finished);
      if (!d.reasoning.empty() && !write(dump(reasoning_chunk(s.meta, d.reasoning, s.include_usage)))) return false;
      ev.text = std::move(d.content);
    }
    if (s.tool_mode) {
      const std::string content = s.tool_stream->push(ev.text);
      if (!content.empty()) {
        if (!write(dump(stream_chunk(s.meta, content, nullptr, false, "", s.include_usage, s.offset)))) return false;
        s.offset += content.size();
      } else if (!ev.finished && clock::now() - s.last_write > std::chrono::seconds(2) && !s.send(sink, ": generating\n\n")) {
        return false;
      }
    } else if (!ev.text.empty() || !ev.logprobs.empty()) {
      if (!write(dump(stream_chunk(s.meta, ev.text, &ev.logprobs, false, "", s.include_usage, s.offset))))
        return false;
      s.offset += ev.text.size();
    } else if (!ev.finished && clock::now() - s.last_write > std::chrono::seconds(2)) {
      // A comment line keeps proxies from timing out and tells us early if the client left
      // while the request waits for a slot.
      if (!s.send(sink, ": waiting\n\n")) return false;
    }
    if (!ev.finished) return true;
    t_log.generated_tokens = ev.completion_tokens;
    if (ev.finish_reason == "error") {
      if (!write(dump(generation_error(ev.error).second))) return false;
    } else {
      std::string finish = api_finish_reason(ev.finish_reason);
      if (s.tool_mode) {
        const ToolReply reply = s.tool_stream->finish(ev.finish_reason == "stop");
        if (!reply.calls.empty()) finish = "tool_calls";
        if ((!reply.content.empty() || !reply.calls.empty()) &&
            !write(dump(tool_reply_chunk(s.meta, reply, s.include_usage))))
          return false;
      }
      if (!write(dump(stream_chunk(s.meta, "", nullptr, false, finish, s.include_usage, s.offset))))
        return false;
      if (s.include_usage && !write(dump(usage_chunk(s.meta, ev)))) return false;
    }
    if (!write("[DONE]")) return false;
    sink.done();
    return true;
  });
}

// ollama's /api/chat and /api/generate (tools/server/ollama_api.h): the request checked as the
// OpenAI one it translates to, the answer as ollama writes it (newline-delimited JSON).
void handle_ollama(State& st, const std::string& body, httplib::Response& res, bool chat) {
  auto in_flight = start_request(st);
  const OllamaRequest o = ollama_request(body, chat, st.chat.has_value());
  CompletionRequest r = parse_completion_request(o.openai_body, o.endpoint);
  std::shared_ptr<RequestHandle> handle = submit(st, r);
  // "think": true: a thinking model's <think> part comes back as ollama returns it
  // (message.thinking on /api/chat, "thinking" on /api/generate), the rest as the content.
  const bool think = o.think && r.chat;
  auto with_thinking = [chat](json j, const std::string& thinking) {
    if (!thinking.empty()) (chat ? j["message"]["thinking"] : j["thinking"]) = thinking;
    return j;
  };
  // With tools the reply is read back once it is whole (calls or words), and sent in one message.
  const bool tools = r.chat && r.tool_mode();
  if (tools || !o.stream) {
    const WholeAnswer w = wait_whole(*handle);
    if (w.fin.finish_reason == "error") {
      const auto [status, err] = generation_error(w.fin.error);
      res.status = status;
      send_json(res, ollama_error(err["error"]["message"].get<std::string>()));
      return;
    }
    const ReasoningSplitter::Delta split =
        think ? ReasoningSplitter::split(w.text, r.reasoning_open) : ReasoningSplitter::Delta{{}, w.text};
    if (!tools) {
      send_json(res, with_thinking(ollama_chunk(chat, st.model_id, split.content, &w.fin), split.reasoning));
      return;
    }
    // With tools the reply is read back once it is whole (calls or words), and sent in one message.
    const ToolFormat format = st.chat ? st.chat->tool_format() : ToolFormat::Generic;
    const ToolReply reply = read_tool_reply(format, split.content, r.tools, w.fin.finish_reason == "stop");
    json last = with_thinking(ollama_chunk(true, st.model_id, reply.content, &w.fin), split.reasoning);
    if (!reply.calls.empty()) last["message"]["tool_calls"] = ollama_tool_calls(reply.calls);
    if (!o.stream) {
      send_json(res, last);
    } else {
      // As ollama streams it: the message, then the counts.
      json msg = with_thinking(ollama_chunk(true, st.model_id, reply.content, nullptr), split.reasoning);
      if (!reply.calls.empty()) msg["message"]["tool_calls"] = last["message"]["tool_calls"];
      last["message"] = {{"role", "assistant"}, {"content", ""}};
      res.set_content(dump(msg) + "\n" + dump(last) + "\n", "application/x-ndjson");
    }
    return;
  }
  struct Lines : StreamState {
    std::string model;
    bool chat = false;
    std::optional<ReasoningSplitter> reasoning;  // think: true
  };
  auto l = std::make_shared<Lines>();
  l->handle = handle;
  l->in_flight = in_flight;
  l->model = st.model_id;
  l->chat = chat;
  if (think) l->reasoning.emplace(r.reasoning_open);
  res.set_header("Cache-Control", "no-cache");
  stream_response(res, "application/x-ndjson", l, [](Lines& l, httplib::DataSink& sink) {
    auto write = [&](const json& j) { return l.send(sink, dump(j) + "\n"); };
    RequestEvents ev = l.next();
    if (l.reasoning) {
      ReasoningSplitter::Delta d = l.reasoning->push(ev.text, ev.finished);
      if (!d.reasoning.empty()) {
        json j = ollama_chunk(l.chat, l.model, "", nullptr);
        (l.chat ? j["message"]["thinking"] : j["thinking"]) = d.reasoning;
        if (!write(j)) return false;
      }
      ev.text = std::move(d.content);
    }
    if (!ev.text.empty() && !write(ollama_chunk(l.chat, l.model, ev.text, nullptr))) return false;
    if (!ev.finished) return true;
    if (ev.finish_reason == "error") {
      if (!write(ollama_error(generation_error(ev.error).second["error"]["message"].get<std::string>()))) return false;
    } else if (!write(ollama_chunk(l.chat, l.model, "", &ev))) {
      return false;
    }
    sink.done();
    return true;
  });
}

// GET /api/tags and POST /api/show: the one model this server runs, as ollama describes one.
json ollama_details(const State& st) {
  int64_t params = 0;
  std::map<DType, uint64_t> bytes;
  for (const TensorInfo& t : st.model->gguf().tensors()) {
    params += t.nelements;
    bytes[t.type] += t.nbytes;
  }
  DType main = DType::F32;  // the type holding most bytes: the file's quantization
  for (const auto& [t, b] : bytes)
    if (b > bytes[main]) main = t;
  const std::string arch = st.model->hparams().arch;
  return {{"parent_model", ""},
          {"format", "gguf"},
          {"family", arch},
          {"families", json::array({arch})},
          {"parameter_size", params >= 1000000000 ? fmt::format("{:.1f}B", params / 1e9)
                             : params >= 1000000  ? fmt::format("{:.0f}M", params / 1e6)
                                                  : fmt::format("{:.0f}K", params / 1e3)},
          {"quantization_level", dtype_name(main)}};
}

// Route label for /metrics: the known routes, everything else as one label (a scanner's
// random paths must not grow the metric set).
std::string route_label(const std::string& path) {
  for (const char* r : {"/", "/health", "/metrics", "/props", "/v1/models", "/v1/chat/completions", "/v1/completions",
                        "/completion", "/infill", "/tokenize", "/detokenize", "/api/chat", "/api/generate",
                        "/api/tags", "/api/show", "/api/embed", "/api/embeddings", "/v1/embeddings", "/embedding",
                        "/embeddings", "/v1/search", "/slots"})
    if (path == r) return path;
  return "other";
}

bool api_key_ok(const State& st, const httplib::Request& req) {
  if (st.opts.api_key.empty()) return true;
  std::string given = req.get_header_value("Authorization");
  if (given.rfind("Bearer ", 0) == 0) given = given.substr(7);
  else given = req.get_header_value("x-api-key");
  // Constant time in the key's length: a wrong key's prefix must not answer faster.
  const std::string& key = st.opts.api_key;
  unsigned diff = given.size() != key.size();
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned>(key[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

// Reads a POST body of at most kMaxBody bytes, whatever its framing (httplib's own limit only
// applies to bodies with a Content-Length; a chunked one would otherwise be read whole).
std::string read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
  // JSON only: a browser page may send text/plain or a form to 127.0.0.1 without asking first
  // (no CORS preflight), and must not be able to make the server generate that way.
  const std::string type = req.get_header_value("Content-Type");
  const std::string media = type.substr(0, type.find(';'));
  if (media != "application/json") {
    res.set_header("Connection", "close");  // the body is never read
    throw ApiError(415, "send the body as JSON with 'Content-Type: application/json' (got " +
                            (type.empty() ? std::string("none") : "'" + type + "'") + ")",
                   {}, "unsupported_media_type");
  }
  std::string body;
  bool too_large = false;
  const bool ok = reader([&](const char* data, size_t n) {
    if (body.size() + n > kMaxBody) {
      too_large = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (too_large || res.status == 413) {
    res.set_header("Connection", "close");  // the rest of the body is never read
    throw ApiError(413, fmt::format("the request body is larger than {} MiB", kMaxBody >> 20), {}, "payload_too_large");
  }
  if (!ok) {
    res.set_header("Connection", "close");
    throw ApiError(400, "the request body could not be read whole", {}, "incomplete_body");
  }
  return body;
}

template <class F>
httplib::Server::HandlerWithContentReader guarded(F&& f) {
  return [f](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    try {
      f(req, res, reader);
    } catch (const ApiError& e) {
      res.status = e.status;
      if (e.status == 503) res.set_header("Retry-After", "1");
      res.set_content(dump(error_body(e.status, e.what(), e.param, e.code, e.type)), "application/json");
    } catch (const std::bad_alloc&) {
      send_error(res, 500, "out of memory");
    } catch (const std::exception& e) {
      send_error(res, 500, std::string("internal error: ") + e.what());
    }
  };
}

void load_model(State& st) {
  st.model = Model::load(GGUFFile::open(st.opts.model_path, st.opts.override_kv));
  st.tok = Tokenizer::from_gguf(st.model->gguf());
  try {
    st.chat.emplace(ChatPrompt::for_model(*st.tok, st.model->gguf(), st.opts.chat_template_file, st.opts.model_path));
    st.chat_template = st.chat->source();
    st.chat->set_template_kwargs(
        ChatPrompt::template_kwargs_from_options(st.opts.chat_template_kwargs, st.opts.reasoning_budget));
  } catch (const Error& e) {
    // A named template that fails is the user's mistake: say so now. A model without one can
    // still serve /v1/completions.
    if (!st.opts.chat_template_file.empty()) throw;
    st.chat_error = std::string(e.what()) + "; /v1/completions works without one";
    fmt::print(stderr, "slm: warning: {}\n", st.chat_error);
  }
  SchedulerOptions so;
  so.n_parallel = st.opts.n_parallel;
  so.n_ctx = context_size(*st.model, st.opts.n_ctx);
  if (const std::string w = context_warning(*st.model, so.n_ctx); !w.empty())
    fmt::print(stderr, "slm: warning: {}\n", w);
  so.n_threads = st.opts.n_threads;
  so.max_queue = st.opts.max_queue;
  so.kv_types = st.opts.kv_types;
  st.lora = load_lora_set(st.opts.lora, *st.model);
  if (st.lora)
    for (size_t i = 0; i < st.lora->adapters.size(); ++i)
      fmt::print(stderr, "slm: LoRA adapter {}: {} (scale {:g})\n", i, st.lora->adapters[i]->path, st.lora->scales[i]);
  so.lora = st.lora;
  if (!st.opts.draft_model_path.empty()) {
    st.draft = Model::load(st.opts.draft_model_path);
    check_draft_vocab(*st.tok, *Tokenizer::from_gguf(st.draft->gguf()));
    so.draft = st.draft.get();
    so.n_draft = st.opts.n_draft;
    so.draft_p_min = st.opts.draft_p_min;
  }
  if (st.opts.lookup) {
    so.lookup = true;
    so.n_draft = st.opts.n_draft;
    so.lookup_ngram_max = st.opts.lookup_ngram;
  }
  if (st.opts.context_shift && (so.draft || so.lookup))
    fail("--context-shift works without --draft-model and --lookup (a request's proposals would be shifted too)");
  so.context_shift = st.opts.context_shift;
  st.scheduler = std::make_unique<BatchScheduler>(*st.model, *st.tok, so, &st.metrics);
  fmt::print(stderr, "slm: model {} loaded: {} slots of {} tokens, {} threads, KV cache {}\n", st.model_id,
             so.n_parallel, so.n_ctx, so.n_threads, kv_types_name(so.kv_types));
  if (st.draft)
    fmt::print(stderr, "slm: draft model {}: up to {} tokens proposed per request and step (p >= {:g})\n",
               std::filesystem::path(st.opts.draft_model_path).filename().string(), so.n_draft, so.draft_p_min);
  if (so.lookup)
    fmt::print(stderr, "slm: prompt lookup: up to {} tokens proposed per request and step ({}- to {}-grams)\n",
               so.n_draft, so.lookup_ngram_min, so.lookup_ngram_max);
  if (!st.opts.embed_model_path.empty()) {
    st.embed_model = Model::load(st.opts.embed_model_path);
    EmbedderOptions eo;
    eo.n_threads = st.opts.n_threads;
    st.embedder = std::make_unique<Embedder>(*st.embed_model, eo);
    fmt::print(stderr, "slm: embedding model {} loaded: {} dimensions\n", st.embed_model_id, st.embedder->dim());
  }
  if (!st.opts.db_path.empty()) {
    st.store = rag::open_store(st.opts.db_path, false);
    st.searcher = std::make_unique<rag::Searcher>(*st.store, st.embedder.get());
    fmt::print(stderr, "slm: index {} opened: {} chunks\n", st.opts.db_path, st.store->chunk_count());
  }
}

// The (normalized) embeddings of an /v1/embeddings body's inputs, and their token count.
struct Embedded {
  std::vector<std::vector<float>> vectors;
  int64_t tokens = 0;
  bool base64 = false;
};
Embedded embed_inputs(State& st, const std::string& body, bool normalize = true) {
  if (!st.ready) throw ApiError(503, "the models are still loading");
  if (!st.embedder)
    throw ApiError(404, "this server has no embedding model: start it with --embed-model MODEL", {}, "no_embedding_model",
                   "invalid_request_error");
  EmbeddingsRequest r = parse_embeddings_request(body, st.embedder->dim());
  std::lock_guard<std::mutex> lock(st.rag_mu);
  std::vector<std::vector<int32_t>> seqs = std::move(r.token_ids);
  for (const std::string& t : r.texts) seqs.push_back(st.embedder->tokenize(t));
  Embedded out;
  out.base64 = r.base64;
  for (const auto& s : seqs) out.tokens += static_cast<int64_t>(s.size());
  try {
    out.vectors = st.embedder->embed(seqs, normalize);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "input");  // too long for the model, or an id outside its vocabulary
  }
  t_log.prompt_tokens = static_cast<int>(out.tokens);
  return out;
}

void handle_embeddings(State& st, const std::string& body, httplib::Response& res) {
  const Embedded e = embed_inputs(st, body);
  send_json(res, embeddings_response(e.vectors, e.base64, st.embed_model_id, e.tokens));
}

void handle_search(State& st, const std::string& body, httplib::Response& res) {
  if (!st.ready) throw ApiError(503, "the index is still opening");
  if (!st.searcher)
    throw ApiError(404, "this server has no index: start it with --db DB (made by slm index add)", {}, "no_index",
                   "invalid_request_error");
  const SearchRequest r = parse_search_request(body);
  rag::SearchOptions so;
  so.k = r.k;
  so.mode = r.mode.empty() ? (st.embedder ? rag::SearchMode::Hybrid : rag::SearchMode::Bm25) : rag::parse_search_mode(r.mode);
  std::lock_guard<std::mutex> lock(st.rag_mu);
  std::vector<rag::SearchHit> hits;
  try {
    hits = st.searcher->search(r.query, so);
  } catch (const rag::StoreUnavailable& e) {
    throw ApiError(503, e.what(), {}, "index_unavailable", "server_error");
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "query");  // no words to search for, no vectors from this model
  }
  json data = json::array();
  for (size_t i = 0; i < hits.size(); ++i) data.push_back(rag::hit_json(hits[i], i + 1));
  send_json(res, {{"object", "list"}, {"mode", rag::search_mode_name(so.mode)}, {"data", std::move(data)}});
}

// The name a model goes by in the API: the file's name, or an ollama name as given
// (llama3.2:1b), where model_file() resolved it to a blob of ollama's store.
std::string model_id_of(const std::string& given, const std::string& file) {
  return file != given ? given : std::filesystem::path(given).filename().string();
}

}  // namespace

int run(const ServerOptions& opts) {
  const std::string model_path = model_file(opts.model_path);
  if (::access(model_path.c_str(), R_OK) != 0) fail("cannot read the model file {}", opts.model_path);
  if (opts.n_parallel < 1 || opts.n_parallel > 256) fail("--parallel {} must be between 1 and 256", opts.n_parallel);
  if (opts.max_queue < 0) fail("--max-queue {} must not be negative", opts.max_queue);
  State st;
  st.opts = opts;
  st.model_id = opts.alias.empty() ? model_id_of(opts.model_path, model_path) : opts.alias;
  if (!opts.draft_model_path.empty() && ::access(model_file(opts.draft_model_path).c_str(), R_OK) != 0)
    fail("cannot read the draft model {}", opts.draft_model_path);
  if (!opts.slot_save_path.empty()) {  // made if missing, as llama-server does
    std::error_code ec;
    std::filesystem::create_directories(opts.slot_save_path, ec);
    if (ec || ::access(opts.slot_save_path.c_str(), W_OK) != 0)
      fail("--slot-save-path {}: cannot make or write the folder{}", opts.slot_save_path, ec ? ": " + ec.message() : "");
  }
  if (!opts.embed_model_path.empty()) {
    const std::string embed_path = model_file(opts.embed_model_path);
    if (::access(embed_path.c_str(), R_OK) != 0) fail("cannot read the embedding model {}", opts.embed_model_path);
    st.embed_model_id = model_id_of(opts.embed_model_path, embed_path);
  }
  st.created = static_cast<int64_t>(std::time(nullptr));

  httplib::Server svr;
  // Every streamed or waiting request holds a thread (the slots, the queue), and so does every
  // idle keep-alive connection until it times out: room for those, health checks and metrics.
  const size_t n_http_threads = static_cast<size_t>(opts.n_parallel + opts.max_queue + 32);
  svr.new_task_queue = [n_http_threads] { return new httplib::ThreadPool(n_http_threads); };
  svr.set_payload_max_length(kMaxBody);
  svr.set_read_timeout(5, 0);   // a half-sent request is dropped after 5 s; it never holds a slot
  svr.set_write_timeout(30, 0);
  svr.set_keep_alive_timeout(2);  // idle connections also hold shutdown this long

  svr.set_pre_routing_handler([&st](const httplib::Request& req, httplib::Response& res) {
    t_log = RequestLog{clock::now()};
    const bool protected_route = req.path.rfind("/v1/", 0) == 0 || req.path.rfind("/api/", 0) == 0 ||
                                 req.path == "/completion" || req.path == "/infill" || req.path == "/tokenize" ||
                                 req.path == "/detokenize" || req.path == "/slots" || req.path.starts_with("/slots/") ||
                                 req.path == "/apply-template" || req.path == "/embedding" || req.path == "/embeddings";
    if (protected_route && !api_key_ok(st, req)) {
      send_error(res, 401, "missing or wrong API key: send it as 'Authorization: Bearer KEY'", {}, "invalid_api_key");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Statuses httplib sets itself (404, 413, 400 for a bad request line) get an OpenAI body too.
  svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    switch (res.status) {
      case 404: message = "no route " + req.method + " " + req.path + " (see GET /v1/models, POST /v1/chat/completions, POST /v1/completions, POST /completion, POST /infill, POST /v1/embeddings, POST /v1/search)"; break;
      case 413: message = fmt::format("the request body is larger than {} MiB", kMaxBody >> 20); break;
      default: message = fmt::format("the request could not be read (HTTP {})", res.status); break;
    }
    res.set_content(dump(error_body(res.status, message)), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_logger([&st](const httplib::Request& req, const httplib::Response& res) {
    const double ms = std::chrono::duration<double, std::milli>(clock::now() - t_log.start).count();
    st.metrics.count_request(route_label(req.path), res.status);
    std::string tokens;
    if (t_log.prompt_tokens >= 0) tokens += fmt::format(" prompt={}", t_log.prompt_tokens);
    if (t_log.generated_tokens >= 0) tokens += fmt::format(" generated={}", t_log.generated_tokens);
    fmt::print(stderr, "slm: {} {} {}{} {:.1f} ms\n", req.method, req.path, res.status, tokens, ms);
  });

  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kChatPage, "text/html; charset=utf-8");
  });
  svr.Get("/health", [&st](const httplib::Request&, httplib::Response& res) {
    if (st.ready) {
      send_json(res, {{"status", "ok"}});
    } else {
      res.status = 503;
      res.set_header("Retry-After", "1");
      send_json(res, {{"status", "loading"}, {"error", error_body(503, "the model is still loading")["error"]}});
    }
  });
  svr.Get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    const SchedulerStats s = st.ready ? st.scheduler->stats() : SchedulerStats{};
    res.set_content(st.metrics.render(s, st.ready), "text/plain; version=0.0.4; charset=utf-8");
  });
  // What the server runs, as llama.cpp's server answers it (its web UI and clients read n_ctx,
  // the slots and the chat template here).
  svr.Get("/props", [&st](const httplib::Request&, httplib::Response& res) {
    if (!st.ready) {
      send_error(res, 503, "the model is still loading; retry shortly", {}, "loading");
      res.set_header("Retry-After", "1");
      return;
    }
    auto special = [&st](int32_t id) { return id >= 0 ? st.tok->token_text(id) : std::string(); };
    send_json(res, {{"default_generation_settings",
                     {{"n_ctx", st.scheduler->n_ctx()},
                      {"model", st.model_id},
                      {"params", {{"n_predict", -1}, {"n_keep", 0}, {"temperature", kDefaultTemperature}, {"top_k", kDefaultTopK},
                                  {"top_p", kDefaultTopP}, {"min_p", kDefaultMinP}, {"repeat_penalty", 1.0},
                                  {"presence_penalty", 0.0}, {"frequency_penalty", 0.0}, {"typical_p", 1.0},
                                  {"top_n_sigma", -1.0}, {"xtc_probability", 0.0}, {"xtc_threshold", 0.1},
                                  {"mirostat", 0}, {"mirostat_tau", 5.0}, {"mirostat_eta", 0.1},
                                  {"dry_multiplier", 0.0}, {"dry_base", 1.75}, {"dry_allowed_length", 2},
                                  {"dry_penalty_last_n", -1},
                                  {"dry_sequence_breakers", {"\n", ":", "\"", "*"}}}}}},
                    {"total_slots", st.opts.n_parallel},
                    {"model_path", st.opts.model_path},
                    {"chat_template", st.chat_template},
                    {"bos_token", special(st.tok->bos())},
                    {"eos_token", special(st.tok->eos())},
                    {"modalities", {{"vision", false}, {"audio", false}}},
                    {"speculative", st.scheduler->speculative()},
                    {"infill", infill_unsupported(*st.tok).empty()},
                    {"build_info", "slm"}});
  });
  // llama.cpp's GET /slots: each slot's state as of the scheduler's last step.
  svr.Get("/slots", [&st](const httplib::Request&, httplib::Response& res) {
    if (!st.ready) return send_error(res, 503, "the model is still loading; retry shortly", {}, "loading");
    json out = json::array();
    for (const SlotInfo& s : st.scheduler->slots())
      out.push_back({{"id", s.id},
                     {"n_ctx", st.scheduler->n_ctx()},
                     {"speculative", st.scheduler->speculative()},
                     {"is_processing", s.processing},
                     {"n_past", s.n_past},
                     {"n_prompt_tokens", s.n_prompt},
                     {"next_token", {{"has_next_token", s.processing}, {"n_remain", s.n_remain}, {"n_decoded", s.n_decoded}}}});
    send_json(res, out);
  });
  // llama-server's slot actions: ?action=save|restore with {"filename": NAME} (a file of
  // --slot-save-path), or erase.
  svr.Post(R"(/slots/(\d+))",
           guarded([&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
             if (!st.ready) throw ApiError(503, "the model is still loading; retry shortly", {}, "loading");
             const std::string action = req.get_param_value("action");
             SlotAction a;
             if (action == "save") a.kind = SlotAction::Kind::Save;
             else if (action == "restore") a.kind = SlotAction::Kind::Restore;
             else if (action == "erase") a.kind = SlotAction::Kind::Erase;
             else throw ApiError(400, "action must be save, restore or erase (as ?action=...)", "action");
             try {
               a.slot = std::stoi(req.matches[1].str());
             } catch (const std::exception&) {
               throw ApiError(400, "no such slot: " + req.matches[1].str(), "id_slot");
             }
             std::string filename;
             if (a.kind != SlotAction::Kind::Erase) {
               if (st.opts.slot_save_path.empty())
                 throw ApiError(501, "slots are saved and restored only when the server runs with --slot-save-path DIR",
                                {}, "not_supported_error");
               const std::string text = read_body(req, res, reader);
               const json body = text.empty() ? json::object() : parse_json_body(text);
               if (!body.contains("filename") || !body["filename"].is_string())
                 throw ApiError(400, "filename (a string: a file name in the --slot-save-path folder) is required",
                                "filename");
               filename = body["filename"].get<std::string>();
               // A plain name inside the folder: no separators, no way up, nothing hidden or unprintable.
               const bool bad = filename.empty() || filename.size() > 255 || filename.front() == '.' ||
                                filename.find_first_of("/\\") != std::string::npos ||
                                std::any_of(filename.begin(), filename.end(),
                                            [](unsigned char c) { return c < 0x20 || c == 0x7f; });
               if (bad) throw ApiError(400, "filename must be a plain file name (no folders, not starting with '.')", "filename");
               a.path = (std::filesystem::path(st.opts.slot_save_path) / filename).string();
             }
             const SlotActionResult r = st.scheduler->slot_action(a);
             if (r.status != 200) throw ApiError(r.status, r.error, r.param);
             json out = {{"id_slot", a.slot}};
             switch (a.kind) {
               case SlotAction::Kind::Save:
                 out.update({{"filename", filename}, {"n_saved", r.n_tokens}, {"n_written", r.n_bytes},
                             {"timings", {{"save_ms", r.ms}}}});
                 break;
               case SlotAction::Kind::Restore:
                 out.update({{"filename", filename}, {"n_restored", r.n_tokens}, {"n_read", r.n_bytes},
                             {"timings", {{"restore_ms", r.ms}}}});
                 break;
               case SlotAction::Kind::Erase:
                 out["n_erased"] = r.n_tokens;
                 break;
             }
             send_json(res, out);
           }));
  // The adapters and their default scales, as llama.cpp's server lists them.
  svr.Get("/lora-adapters", [&st](const httplib::Request&, httplib::Response& res) {
    json list = json::array();
    if (st.lora)
      for (size_t i = 0; i < st.lora->adapters.size(); ++i)
        list.push_back({{"id", i}, {"path", st.lora->adapters[i]->path}, {"scale", st.lora->scales[i]}});
    send_json(res, list);
  });
  // The models this server runs: the chat model and, with --embed-model, the embedding one.
  auto model_list = [&st] {
    json model = {{"id", st.model_id}, {"object", "model"}, {"created", st.created}, {"owned_by", "slm"}};
    if (st.ready) {
      const auto& hp = st.model->hparams();
      model["meta"] = {{"architecture", hp.arch}, {"n_vocab", hp.n_vocab}, {"n_ctx_train", hp.n_ctx_train},
                       {"n_ctx", st.scheduler->n_ctx()}, {"n_embd", hp.n_embd}, {"n_layer", hp.n_layer}};
    }
    json list = json::array({model});
    if (!st.embed_model_id.empty()) {
      json em = {{"id", st.embed_model_id}, {"object", "model"}, {"created", st.created}, {"owned_by", "slm"}};
      if (st.ready && st.embedder) em["meta"] = {{"architecture", st.embed_model->hparams().arch}, {"n_embd", st.embedder->dim()}};
      list.push_back(std::move(em));
    }
    return list;
  };
  svr.Get("/v1/models", [model_list](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"object", "list"}, {"data", model_list()}});
  });
  // One model by id (the openai clients' models.retrieve).
  svr.Get(R"(/v1/models/(.+))", [model_list](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    for (const json& m : model_list())
      if (m["id"] == id) return send_json(res, m);
    send_error(res, 404, "no model '" + id + "' here (see GET /v1/models)", "model", "model_not_found");
  });
  // The completion endpoints: OpenAI's, and llama.cpp's own completion and fill-in-the-middle
  // (as editor plugins such as llama.vim and llama.vscode call it).
  for (const auto& [route, endpoint] : {std::pair{"/v1/chat/completions", Endpoint::Chat},
                                        {"/v1/completions", Endpoint::Completions},
                                        {"/completion", Endpoint::Native},
                                        {"/infill", Endpoint::Infill}}) {
    svr.Post(route, guarded([&st, endpoint = endpoint](const httplib::Request& req, httplib::Response& res,
                                                       const httplib::ContentReader& reader) {
      handle_completion(st, read_body(req, res, reader), res, endpoint);
    }));
  }
  // ollama's API.
  for (const auto& [route, chat] : {std::pair{"/api/chat", true}, {"/api/generate", false}}) {
    svr.Post(route, [&st, chat = chat](const httplib::Request& req, httplib::Response& res,
                                       const httplib::ContentReader& reader) {
      try {
        handle_ollama(st, read_body(req, res, reader), res, chat);
      } catch (const ApiError& e) {
        res.status = e.status;
        send_json(res, ollama_error(e.what()));
      } catch (const std::exception& e) {
        res.status = 500;
        send_json(res, ollama_error(std::string("internal error: ") + e.what()));
      }
    });
  }
  // ollama's /api/embed: {"input": text or texts} -> {"embeddings": [[...]]}, normalized as
  // ollama's are, from the --embed-model.
  svr.Post("/api/embed", [&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    try {
      const json body = parse_json_body(read_body(req, res, reader));
      auto input = body.find("input");
      if (input == body.end() || input->is_null())
        throw ApiError(400, "'input' is required", "input", "missing_required_parameter");
      if (!input->is_string() && !input->is_array()) throw ApiError(400, "'input' must be a string or an array of strings", "input");
      const auto t0 = clock::now();
      const Embedded e = embed_inputs(st, dump(json{{"input", *input}}));
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count();
      send_json(res, {{"model", st.embed_model_id}, {"embeddings", e.vectors}, {"total_duration", ns},
                      {"load_duration", 0}, {"prompt_eval_count", e.tokens}});
    } catch (const ApiError& e) {
      res.status = e.status;
      send_json(res, ollama_error(e.what()));
    }
  });
  // ollama's older /api/embeddings: {"prompt": text} -> {"embedding": [...]}, the pooled vector
  // as it is (ollama normalizes only /api/embed's).
  svr.Post("/api/embeddings", [&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    try {
      const json body = parse_json_body(read_body(req, res, reader));
      auto prompt = body.find("prompt");
      if (prompt == body.end() || !prompt->is_string())
        throw ApiError(400, "'prompt' (the text to embed, a string) is required", "prompt", "missing_required_parameter");
      const Embedded e = embed_inputs(st, dump(json{{"input", *prompt}}), /*normalize=*/false);
      send_json(res, {{"embedding", e.vectors.at(0)}});
    } catch (const ApiError& e) {
      res.status = e.status;
      send_json(res, ollama_error(e.what()));
    }
  });
  svr.Get("/api/tags", [&st](const httplib::Request&, httplib::Response& res) {
    json models = json::array();
    if (st.ready) {
      std::error_code ec;
      const auto mtime = std::filesystem::last_write_time(st.opts.model_path, ec);
      const auto sys = std::chrono::file_clock::to_sys(mtime);
      models.push_back({{"name", st.model_id},
                        {"model", st.model_id},
                        {"modified_at", ec ? std::string() : fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(sys)))},
                        {"size", st.model->gguf().file_size()},
                        {"digest", ""},
                        {"details", ollama_details(st)}});
    }
    send_json(res, {{"models", std::move(models)}});
  });
  // ollama's version (the API level this server answers: structured outputs and tools in chat
  // came with 0.5) and its running models (this server's one, held in memory until it stops).
  svr.Get("/api/version", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"version", "0.5.0"}});
  });
  svr.Get("/api/ps", [&st](const httplib::Request&, httplib::Response& res) {
    json models = json::array();
    if (st.ready)
      models.push_back({{"name", st.model_id},
                        {"model", st.model_id},
                        {"size", st.model->gguf().file_size()},
                        {"digest", ""},
                        {"details", ollama_details(st)},
                        {"expires_at", "9999-12-31T23:59:59Z"},
                        {"size_vram", 0}});
    send_json(res, {{"models", std::move(models)}});
  });
  svr.Post("/api/show", [&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    try {
      const json body = parse_json_body(read_body(req, res, reader));
      if (!st.ready) throw ApiError(503, "the model is still loading; retry shortly");
      const std::string name = body.value("model", body.value("name", std::string()));
      if (!name.empty() && name != st.model_id)
        throw ApiError(404, "model '" + name + "' not found: this server runs " + st.model_id);
      const HParams& hp = st.model->hparams();
      json capabilities = json::array({"completion"});
      if (infill_unsupported(*st.tok).empty()) capabilities.push_back("insert");
      // As ollama decides them from the template: tools where it shows tools itself, thinking
      // where it knows <think> (Qwen3, DeepSeek-R1) or enable_thinking.
      if (st.chat && st.chat->tool_format() != ToolFormat::Generic) capabilities.push_back("tools");
      if (st.chat && (st.chat_template.find("<think>") != std::string::npos ||
                      st.chat_template.find("enable_thinking") != std::string::npos))
        capabilities.push_back("thinking");
      send_json(res, {{"modelfile", ""},
                      {"parameters", ""},
                      {"template", st.chat_template},
                      {"details", ollama_details(st)},
                      {"model_info", {{"general.architecture", hp.arch},
                                      {hp.arch + ".context_length", hp.n_ctx_train},
                                      {hp.arch + ".embedding_length", hp.n_embd},
                                      {hp.arch + ".block_count", hp.n_layer},
                                      {hp.arch + ".attention.head_count", hp.n_head},
                                      {hp.arch + ".attention.head_count_kv", hp.n_head_kv}}},
                      {"capabilities", capabilities}});
    } catch (const ApiError& e) {
      res.status = e.status;
      send_json(res, ollama_error(e.what()));
    }
  });
  // llama.cpp's tokenizer endpoints.
  for (const auto& [route, answer] : {std::pair{"/tokenize", &tokenize_response}, {"/detokenize", &detokenize_response}}) {
    svr.Post(route, guarded([&st, answer = answer](const httplib::Request& req, httplib::Response& res,
                                                   const httplib::ContentReader& reader) {
      const std::string body = read_body(req, res, reader);
      if (!st.ready) throw ApiError(503, "the model is still loading; retry shortly", {}, "loading");
      send_json(res, answer(*st.tok, body));
    }));
  }
  // llama.cpp's /apply-template: the chat prompt a request's messages (and tools) become, without
  // generating: {"prompt": text}.
  svr.Post("/apply-template",
           guarded([&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
             CompletionRequest r = parse_completion_request(read_body(req, res, reader), Endpoint::Chat);
             if (!st.ready) throw ApiError(503, "the model is still loading; retry shortly", {}, "loading");
             if (!st.chat) throw ApiError(400, st.chat_error, "messages", "no_chat_template");
             send_json(res, {{"prompt", render_chat(*st.chat, r)}});
           }));
  svr.Post("/v1/embeddings",
           guarded([&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
             handle_embeddings(st, read_body(req, res, reader), res);
           }));
  // llama.cpp's own /embedding (and /embeddings): {"content": text, texts or token ids} ->
  // [{"index": i, "embedding": [[...]]}], normalized as its default is.
  for (const char* route : {"/embedding", "/embeddings"})
    svr.Post(route, guarded([&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
               const json body = parse_json_body(read_body(req, res, reader));
               auto content = body.find("content");
               if (content == body.end()) content = body.find("input");
               if (content == body.end() || content->is_null())
                 throw ApiError(400, "'content' (a text, texts or token ids) is required", "content", "missing_required_parameter");
               const Embedded e = embed_inputs(st, dump(json{{"input", *content}}));
               json out = json::array();
               for (size_t i = 0; i < e.vectors.size(); ++i)
                 out.push_back({{"index", i}, {"embedding", json::array({e.vectors[i]})}});
               send_json(res, out);
             }));
  svr.Post("/v1/search",
           guarded([&st](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
             handle_search(st, read_body(req, res, reader), res);
           }));
  for (const char* post_only : {"/v1/chat/completions", "/v1/completions", "/completion", "/infill", "/tokenize",
                                "/detokenize", "/api/chat", "/api/generate", "/api/show", "/api/embed", "/api/embeddings",
                                "/v1/embeddings", "/embedding", "/embeddings", "/v1/search", "/apply-template"})
    svr.Get(post_only, [](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", "POST");
      send_error(res, 405, req.path + " takes POST with a JSON body", {}, "method_not_allowed");
    });

  const int port = opts.port == 0 ? svr.bind_to_any_port(opts.host) : (svr.bind_to_port(opts.host, opts.port) ? opts.port : -1);
  if (port < 0) fail("cannot listen on {}:{} (in use, or not an address of this machine)", opts.host, opts.port);

  if (::pipe2(g_signal_pipe, O_CLOEXEC) != 0) fail("cannot create the signal pipe");
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::atomic<int> exit_code{0};
  std::thread loader([&] {
    try {
      load_model(st);
      st.ready = true;
    } catch (const std::exception& e) {
      fmt::print(stderr, "slm: error: {}\n", e.what());
      exit_code = 1;
      on_signal(0);  // stop the server
    }
  });
  // Orderly shutdown: stop accepting, end the running requests (their streams finish with a
  // final chunk and [DONE]), and let listen() return once every handler is done.
  std::thread watcher([&] {
    char c = 0;
    while (::read(g_signal_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    if (c == 1) fmt::print(stderr, "slm: shutting down\n");
    st.stopping = true;
    loader.join();
    if (st.scheduler) st.scheduler->shutdown();
    // httplib ends a stream it is writing as soon as it stops listening: wait (a while, at
    // most) for the running completions to write their last chunk first.
    for (int i = 0; i < 500 && st.in_flight.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    svr.stop();
  });

  fmt::print(stderr, "slm: listening on http://{}:{}\n", opts.host.find(':') != std::string::npos ? "[" + opts.host + "]" : opts.host, port);
  svr.listen_after_bind();
  on_signal(0);  // wakes the watcher when listen() ended for another reason
  watcher.join();
  st.scheduler.reset();
  ::close(g_signal_pipe[0]);
  ::close(g_signal_pipe[1]);
  return exit_code;
}

}  // namespace slm::server
