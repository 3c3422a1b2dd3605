#include "chat/jinja.h"

#include <fmt/format.h>

#include "chat/jinja_ast.h"
#include "chat/jinja_interp.h"
#include "chat/jinja_value.h"

namespace slm::chat {

namespace {

std::string format_error(const std::string& message, int line) {
  if (line > 0) return fmt::format("template error (line {}): {}", line, message);
  return "template error: " + message;
}

template <class Json>
std::string render_json(const jinja::Program& program, const Json& context,
                        const RenderOptions& options) {
  if (!context.is_object() && !context.is_null())
    throw TemplateError("the render context must be a JSON object", 0);
  jinja::Value ctx;
  try {
    ctx = context.is_null() ? jinja::Value::dict({}) : jinja::from_json(context);
  } catch (const jinja::EvalError& e) {
    throw TemplateError(e.what(), 0);
  }
  try {
    return jinja::render_program(program, ctx, options.now);
  } catch (const jinja::EvalError& e) {
    throw TemplateError(e.what(), 0);
  }
}

}  // namespace

TemplateError::TemplateError(const std::string& message, int line)
    : std::runtime_error(format_error(message, line)), line_(line), message_(message) {}

std::tm RenderOptions::fixed_date(int year, int month, int day, int hour, int minute,
                                  int second) {
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 ||
      minute > 59 || second < 0 || second > 60)
    throw std::invalid_argument("RenderOptions::fixed_date: date or time out of range");
  std::tm t{};
  t.tm_year = year - 1900;
  t.tm_mon = month - 1;
  t.tm_mday = day;
  t.tm_hour = hour;
  t.tm_min = minute;
  t.tm_sec = second;
  // Day of the week and of the year (for %a, %A, %j, %U, %W), by Zeller-free counting.
  static const int kCumDays[] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  t.tm_yday = kCumDays[month - 1] + day - 1 + ((leap && month > 2) ? 1 : 0);
  // Days since 1970-01-01 (a Thursday).
  const int y = month <= 2 ? year - 1 : year;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int mp = (month + 9) % 12;
  const int doy = (153 * mp + 2) / 5 + day - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const long days = static_cast<long>(era) * 146097 + doe - 719468;
  t.tm_wday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday (4)
  t.tm_isdst = -1;
  return t;
}

Template::Template(const std::string& source) : program_(jinja::parse(source)) {}
Template::~Template() = default;

std::string Template::render(const nlohmann::json& context, const RenderOptions& options) const {
  return render_json(*program_, context, options);
}

std::string Template::render(const nlohmann::ordered_json& context,
                             const RenderOptions& options) const {
  return render_json(*program_, context, options);
}

std::string render_template(const std::string& source, const nlohmann::json& context) {
  return Template(source).render(context);
}

std::string render_template(const std::string& source, const nlohmann::json& context,
                            const RenderOptions& options) {
  return Template(source).render(context, options);
}

std::string render_template(const std::string& source, const nlohmann::ordered_json& context,
                            const RenderOptions& options) {
  return Template(source).render(context, options);
}

}  // namespace slm::chat
