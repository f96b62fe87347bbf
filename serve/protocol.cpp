#include "serve/protocol.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace metatape::serve {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& message) { throw RequestError(400, "metatape: serve: " + message); }

// Refuses nesting deeper than max_depth before the parser sees the text.
void check_depth(std::string_view body, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) bad("the JSON nests deeper than " + std::to_string(max_depth) + " levels");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
}

// The DOM builder, remembering where and why parsing failed (sax_parse dispatches statically, so
// this parse_error hides the base's).
struct LocatingParser : nlohmann::detail::json_sax_dom_parser<json> {
  explicit LocatingParser(json& doc) : nlohmann::detail::json_sax_dom_parser<json>(doc, false) {}
  template <class Exception>
  bool parse_error(std::size_t position, const std::string&, const Exception& e) {
    error_position = position;
    error = e.what();
    return false;
  }
  std::size_t error_position = 0;
  std::string error;
};

// The field ("x[1][0]", "steps") being read at byte `position` of a JSON text, from the structure
// before it.
std::string field_at(std::string_view body, std::size_t position) {
  struct Frame {
    bool array;
    std::int64_t index;
    std::string key;
  };
  std::vector<Frame> stack;
  std::string last_string;
  const std::size_t end = std::min(position, body.size());
  for (std::size_t i = 0; i < end; ++i) {
    const char c = body[i];
    if (c == '"') {
      std::string text;
      for (++i; i < end && body[i] != '"'; ++i) {
        if (body[i] == '\\')
          ++i;
        else
          text += body[i];
      }
      last_string = text;
    } else if (c == '[' || c == '{') {
      stack.push_back(Frame{c == '[', 0, ""});
    } else if ((c == ']' || c == '}') && !stack.empty()) {
      stack.pop_back();
    } else if (c == ',' && !stack.empty() && stack.back().array) {
      ++stack.back().index;
    } else if (c == ':' && !stack.empty() && !stack.back().array) {
      stack.back().key = last_string;
    }
  }
  std::string path;
  for (const Frame& f : stack) {
    if (f.array)
      path += "[" + std::to_string(f.index) + "]";
    else if (!f.key.empty())
      path += (path.empty() ? "" : ".") + f.key;
  }
  return path.empty() ? "the body" : path;
}

json parse_object(std::string_view body, const RequestLimits& limits) {
  if (body.empty()) bad("the request body is empty (send a JSON object)");
  check_depth(body, limits.max_depth);
  json doc;
  LocatingParser parser(doc);
  if (!json::sax_parse(body.begin(), body.end(), &parser)) {
    const std::string field = field_at(body, parser.error_position > 0 ? parser.error_position - 1 : 0);
    if (parser.error.find("number overflow") != std::string::npos) {
      bad(field + " is not finite: the number overflows (NaN and Inf are refused)");
    }
    bad("the request body is not valid JSON at " + field + " (" + parser.error +
        "; NaN and Inf are not JSON numbers and are refused)");
  }
  if (!doc.is_object()) bad("the request body must be a JSON object");
  return doc;
}

float to_float(const json& v, const std::string& field) {
  if (!v.is_number()) bad(field + " must be a number, got " + std::string(v.type_name()));
  const double d = v.get<double>();
  if (!std::isfinite(d)) bad(field + " is not finite (NaN and Inf are refused)");
  if (std::abs(d) > static_cast<double>(std::numeric_limits<float>::max())) {
    bad(field + " = " + v.dump() + " overflows float32 (it would become Inf)");
  }
  return static_cast<float>(d);
}

// A rows x cols matrix of numbers; `flat_ok`: a flat array counts as rows x 1.
std::vector<float> matrix(const json& doc, const char* name, std::int64_t cols, std::int64_t max_rows, bool flat_ok,
                          std::int64_t& rows) {
  auto it = doc.find(name);
  if (it == doc.end()) bad(std::string("missing field \"") + name + "\"");
  const json& m = *it;
  if (!m.is_array()) bad(std::string(name) + " must be an array of rows, got " + m.type_name());
  rows = static_cast<std::int64_t>(m.size());
  if (rows == 0) bad(std::string(name) + " has no rows");
  if (rows > max_rows) {
    bad(std::string(name) + " has " + std::to_string(rows) + " rows, the server accepts at most " +
        std::to_string(max_rows));
  }
  std::vector<float> out;
  out.reserve(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const json& row = m[static_cast<std::size_t>(r)];
    const std::string where = std::string(name) + "[" + std::to_string(r) + "]";
    if (flat_ok && cols == 1 && !row.is_array()) {
      out.push_back(to_float(row, where));
      continue;
    }
    if (!row.is_array()) bad(where + " must be an array of " + std::to_string(cols) + " numbers");
    if (static_cast<std::int64_t>(row.size()) != cols) {
      bad(where + " has " + std::to_string(row.size()) + " values, the model expects " + std::to_string(cols));
    }
    for (std::int64_t c = 0; c < cols; ++c) {
      out.push_back(to_float(row[static_cast<std::size_t>(c)], where + "[" + std::to_string(c) + "]"));
    }
  }
  return out;
}

}  // namespace

AdaptRequest parse_adapt_request(std::string_view body, const RequestLimits& limits) {
  const json doc = parse_object(body, limits);
  AdaptRequest r;
  r.x = matrix(doc, "x", limits.in_features, limits.max_support_rows, false, r.rows);
  std::int64_t y_rows = 0;
  r.y = matrix(doc, "y", limits.y_columns, limits.max_support_rows, limits.y_columns == 1, y_rows);
  if (y_rows != r.rows) {
    bad("y has " + std::to_string(y_rows) + " rows but x has " + std::to_string(r.rows) +
        " (one target per support row)");
  }
  if (limits.classification) {
    for (std::size_t i = 0; i < r.y.size(); ++i) {
      const float v = r.y[i];
      if (v < 0 || v != std::floor(v)) {
        bad("y[" + std::to_string(i) + "] = " + std::to_string(v) + " is not a class label (an integer >= 0)");
      }
    }
  }
  if (auto it = doc.find("steps"); it != doc.end() && !it->is_null()) {
    if (!it->is_number_integer()) bad("steps must be an integer, got " + it->dump());
    const auto steps = it->get<std::int64_t>();
    if (steps < 0 || steps > limits.max_steps) {
      bad("steps = " + std::to_string(steps) + " is outside [0, " + std::to_string(limits.max_steps) + "]");
    }
    r.steps = static_cast<int>(steps);
  }
  return r;
}

PredictRequest parse_predict_request(std::string_view body, const RequestLimits& limits) {
  const json doc = parse_object(body, limits);
  PredictRequest r;
  auto it = doc.find("model_id");
  if (it == doc.end()) bad("missing field \"model_id\" (the id /v1/adapt returned)");
  if (!it->is_string()) bad("model_id must be a string, got " + std::string(it->type_name()));
  r.model_id = it->get<std::string>();
  if (r.model_id.empty() || r.model_id.size() > 64) bad("model_id must have 1 to 64 characters");
  r.x = matrix(doc, "x", limits.in_features, limits.max_query_rows, false, r.rows);
  return r;
}

std::string error_body(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace metatape::serve
