#include "json.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace mild::detail {

namespace {
const char* type_name(Json::Type t) {
    switch (t) {
        case Json::Type::Null: return "null";
        case Json::Type::Bool: return "a boolean";
        case Json::Type::Number: return "a number";
        case Json::Type::String: return "a string";
        case Json::Type::Array: return "an array";
        case Json::Type::Object: return "an object";
    }
    return "?";
}

[[noreturn]] void wrong_type(const char* what, const char* want, Json::Type got) {
    throw std::runtime_error(std::string(what) + " is " + type_name(got) + ", expected " + want);
}
}  // namespace

class JsonParser {
public:
    explicit JsonParser(const std::string& text) : s_(text) {}

    Json document() {
        Json value = parse_value(0);
        skip_space();
        if (pos_ != s_.size()) error("text after the JSON value");
        return value;
    }

private:
    const std::string& s_;
    size_t pos_ = 0;

    [[noreturn]] void error(const std::string& what) const {
        throw std::runtime_error("JSON " + what + " at byte " + std::to_string(pos_));
    }

    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) {
            ++pos_;
        }
    }

    bool consume(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(pos_, n, word) != 0) return false;
        pos_ += n;
        return true;
    }

    Json parse_value(int depth) {
        if (depth > 64) error("nesting deeper than 64");
        skip_space();
        if (pos_ >= s_.size()) error("ends early");
        Json v;
        char c = s_[pos_];
        if (c == '{') {
            v.type_ = Json::Type::Object;
            v.object_ = std::make_shared<std::map<std::string, Json>>();
            ++pos_;
            skip_space();
            if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return v; }
            for (;;) {
                skip_space();
                if (pos_ >= s_.size() || s_[pos_] != '"') error("expects a string key");
                std::string key = parse_string();
                skip_space();
                if (pos_ >= s_.size() || s_[pos_] != ':') error("expects ':'");
                ++pos_;
                (*v.object_)[key] = parse_value(depth + 1);
                skip_space();
                if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
                if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return v; }
                error("expects ',' or '}'");
            }
        }
        if (c == '[') {
            v.type_ = Json::Type::Array;
            v.array_ = std::make_shared<std::vector<Json>>();
            ++pos_;
            skip_space();
            if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return v; }
            for (;;) {
                v.array_->push_back(parse_value(depth + 1));
                skip_space();
                if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
                if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return v; }
                error("expects ',' or ']'");
            }
        }
        if (c == '"') {
            v.type_ = Json::Type::String;
            v.string_ = parse_string();
            return v;
        }
        if (consume("true")) { v.type_ = Json::Type::Bool; v.bool_ = true; return v; }
        if (consume("false")) { v.type_ = Json::Type::Bool; return v; }
        if (consume("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = pos_;
            if (s_[pos_] == '-') ++pos_;
            while (pos_ < s_.size() && std::strchr("0123456789.eE+-", s_[pos_]) != nullptr) ++pos_;
            std::string digits = s_.substr(start, pos_ - start);
            char* end = nullptr;
            v.type_ = Json::Type::Number;
            v.number_ = std::strtod(digits.c_str(), &end);
            if (end != digits.c_str() + digits.size()) { pos_ = start; error("has a bad number"); }
            return v;
        }
        if (consume("NaN")) { v.type_ = Json::Type::Number; v.number_ = NAN; return v; }  // Python's json
        if (consume("Infinity")) { v.type_ = Json::Type::Number; v.number_ = INFINITY; return v; }
        error("has an unexpected character");
    }

    static void append_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    uint32_t hex4() {
        if (pos_ + 4 > s_.size()) error("has a short \\u escape");
        uint32_t cp = 0;
        for (int i = 0; i < 4; ++i) {
            char h = s_[pos_++];
            cp <<= 4;
            if (h >= '0' && h <= '9') cp |= h - '0';
            else if (h >= 'a' && h <= 'f') cp |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F') cp |= h - 'A' + 10;
            else error("has a bad \\u escape");
        }
        return cp;
    }

    std::string parse_string() {
        ++pos_;  // opening quote
        std::string out;
        while (pos_ < s_.size()) {
            char c = s_[pos_++];
            if (c == '"') return out;
            if (c != '\\') { out += c; continue; }
            if (pos_ >= s_.size()) break;
            char e = s_[pos_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = hex4();
                    if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(pos_, 2, "\\u") == 0) {
                        pos_ += 2;
                        uint32_t low = hex4();
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default: error("has a bad escape");
            }
        }
        error("has an unterminated string");
    }
};

Json Json::parse(const std::string& text) { return JsonParser(text).document(); }

double Json::number(const char* what) const {
    if (type_ != Type::Number) wrong_type(what, "a number", type_);
    return number_;
}

int64_t Json::integer(const char* what) const {
    double v = number(what);
    if (v != std::floor(v) || std::fabs(v) > 9.0e15) wrong_type(what, "an integer", Type::Number);
    return static_cast<int64_t>(v);
}

const std::string& Json::string(const char* what) const {
    if (type_ != Type::String) wrong_type(what, "a string", type_);
    return string_;
}

bool Json::boolean(const char* what) const {
    if (type_ != Type::Bool) wrong_type(what, "a boolean", type_);
    return bool_;
}

const std::vector<Json>& Json::array(const char* what) const {
    if (type_ != Type::Array) wrong_type(what, "an array", type_);
    return *array_;
}

const std::map<std::string, Json>& Json::object(const char* what) const {
    if (type_ != Type::Object) wrong_type(what, "an object", type_);
    return *object_;
}

const Json* Json::find(const std::string& key) const {
    if (type_ != Type::Object) return nullptr;
    auto it = object_->find(key);
    return it == object_->end() ? nullptr : &it->second;
}

const Json& Json::at(const std::string& key) const {
    const Json* v = find(key);
    if (v == nullptr) throw std::runtime_error("missing key \"" + key + "\"");
    return *v;
}

}  // namespace mild::detail
