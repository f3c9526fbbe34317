// A small JSON reader for manifest.json: enough of RFC 8259 for what mild-export writes
// (objects, arrays, strings with escapes, numbers, true/false/null). Values are immutable trees.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mild::detail {

class Json {
public:
    enum class Type { Null, Bool, Number, String, Array, Object };

    static Json parse(const std::string& text);  // throws std::runtime_error with the offset

    Type type() const { return type_; }
    bool is_null() const { return type_ == Type::Null; }
    bool is_object() const { return type_ == Type::Object; }
    bool is_array() const { return type_ == Type::Array; }
    bool is_string() const { return type_ == Type::String; }
    bool is_number() const { return type_ == Type::Number; }

    // Typed access; throws std::runtime_error naming `what` when the type differs.
    double number(const char* what) const;
    int64_t integer(const char* what) const;
    const std::string& string(const char* what) const;
    bool boolean(const char* what) const;
    const std::vector<Json>& array(const char* what) const;
    const std::map<std::string, Json>& object(const char* what) const;

    // Object member or nullptr.
    const Json* find(const std::string& key) const;
    // Object member; throws naming the key when absent.
    const Json& at(const std::string& key) const;

private:
    Type type_ = Type::Null;
    bool bool_ = false;
    double number_ = 0;
    std::string string_;
    std::shared_ptr<std::vector<Json>> array_;
    std::shared_ptr<std::map<std::string, Json>> object_;

    friend class JsonParser;
};

}  // namespace mild::detail
