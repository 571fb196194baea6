-- The REST check: Envoy's Lua filter runs this on every request before the
-- gRPC-JSON transcoder sees it.
--
-- Why it exists: the transcoder's JSON parser is lenient and nothing in its
-- configuration makes it strict. It takes trailing commas, single quotes and
-- unquoted keys, reads "yes" as true, takes {} where a duration belongs and
-- drops fields it does not know. Each of those turns a client's mistake into
-- a request that does something else. This script refuses them with a 400 in
-- the server's own error shape (code 3, an ErrorInfo and a BadRequest naming
-- every bad field), so a REST client sees one format whoever refused it.
--
-- What it checks, for a request whose method and path match a
-- google.api.http binding (anything else is left to the transcoder and the
-- 404/405 routes):
--   * the body is strict JSON (RFC 8259): UTF-8, one value, no trailing
--     commas, double-quoted strings and keys, no comments, no NaN, no
--     leading zeros, no control characters inside strings, nesting at most
--     MAX_DEPTH deep;
--   * every key is a field of the message (proto or JSON name), given once;
--   * every value has the JSON type the proto3 JSON mapping gives its field,
--     enums by one of their names (or number), durations as "1.5s",
--     timestamps in RFC 3339;
--   * every query parameter is a field the binding reads from the query,
--     given once, with a value of its type;
--   * path variables and query values are UTF-8 once percent-decoded.
-- It does not repeat the server's checks of values (lengths, ranges,
-- formats of ids): those stay in the server, where gRPC clients meet them
-- too.
--
-- scripts/gen.py writes envoy/rest_filter.lua: the tables ROUTES, MESSAGES
-- and ENUMS derived from the descriptor set, followed by this file. Edit
-- this file and run the generator; never edit rest_filter.lua.

-- Counted in JSON containers from the body's root. Each JSON level inside a
-- Struct payload costs two protobuf levels, and the server's decoder stops
-- at 100 (a 60-level payload came back as a 500 from it); 32 stays clear.
local MAX_DEPTH = 32
local MAX_VIOLATIONS = 20
-- Set on a request this script refused, so local_reply_config leaves the
-- reply's body alone (its mappers would otherwise wrap it a second time).
local REFUSED_HEADER = "x-chronosched-rest-check"

local byte, sub, find, format = string.byte, string.sub, string.find, string.format
local concat = table.concat

-- Parser state for one body: the text, the position of the next byte, the
-- path of the value being read (a stack of segments) and what was found.
local S, P, PATH, DEPTH, FOUND

local function path_text()
  local out = {}
  for i = 1, #PATH do
    local seg = PATH[i]
    if type(seg) == "number" then
      out[#out + 1] = "[" .. seg .. "]"
    elseif sub(seg, 1, 1) == "[" then
      out[#out + 1] = seg
    elseif #out == 0 then
      out[#out + 1] = seg
    else
      out[#out + 1] = "." .. seg
    end
  end
  return concat(out)
end

local function violation(field, description, reason)
  if #FOUND < MAX_VIOLATIONS then
    FOUND[#FOUND + 1] = {field = field, description = description, reason = reason}
  end
end

local function wrong(description, reason)
  violation(path_text(), description, reason or "WRONG_TYPE")
end

-- A syntax error ends the parse: nothing after it can be read reliably.
local function syntax(message)
  local line, column = 1, 1
  local last = 0
  while true do
    local nl = find(S, "\n", last + 1, true)
    if nl == nil or nl >= P then
      break
    end
    line = line + 1
    last = nl
  end
  column = P - last
  error({syntax = true, field = path_text(),
         description = format("not valid JSON: %s (line %d, column %d)", message, line, column)})
end

local function skip_ws()
  local c = byte(S, P)
  -- Most values are preceded by nothing or by one space.
  if c ~= nil and c > 32 then
    return
  end
  if c == 32 then
    P = P + 1
    c = byte(S, P)
    if c ~= nil and c > 32 then
      return
    end
  end
  P = find(S, "[^ \t\n\r]", P) or (#S + 1)
end

local function describe_at()
  local c = sub(S, P, P)
  if c == "" then
    return "the end of the body"
  end
  if c == "'" then
    return "a single quote (strings take double quotes)"
  end
  return format("%q", sub(S, P, P + 9):match("^[^\n]*"))
end

-- UTF-8: JSON text is UTF-8 (RFC 8259, 8.1).

-- For each lead byte of a well-formed UTF-8 sequence (RFC 3629): the range
-- of the byte after it, and how many bytes follow the lead.
local UTF8_LEADS = {}
for c = 0xC2, 0xDF do
  UTF8_LEADS[c] = {0x80, 0xBF, 1}
end
for c = 0xE1, 0xEF do
  UTF8_LEADS[c] = {0x80, 0xBF, 2}
end
for c = 0xF1, 0xF3 do
  UTF8_LEADS[c] = {0x80, 0xBF, 3}
end
-- Overlong forms, surrogates and anything above U+10FFFF are not UTF-8.
UTF8_LEADS[0xE0] = {0xA0, 0xBF, 2}
UTF8_LEADS[0xED] = {0x80, 0x9F, 2}
UTF8_LEADS[0xF0] = {0x90, 0xBF, 3}
UTF8_LEADS[0xF4] = {0x80, 0x8F, 3}

-- The length of the well-formed sequence at byte i (not ASCII), or 0.
local function utf8_length(text, i)
  local lead = UTF8_LEADS[byte(text, i)]
  if lead == nil or i + lead[3] > #text then
    return 0
  end
  local second = byte(text, i + 1)
  if second < lead[1] or second > lead[2] then
    return 0
  end
  for k = i + 2, i + lead[3] do
    local b = byte(text, k)
    if b < 0x80 or b > 0xBF then
      return 0
    end
  end
  return lead[3] + 1
end

-- The first byte at or after `init` that is not part of a well-formed
-- sequence, or nil. ASCII text costs one find.
local function utf8_break(text, init)
  local i = find(text, "[\128-\255]", init)
  while i do
    local length = utf8_length(text, i)
    if length == 0 then
      return i
    end
    i = find(text, "[\128-\255]", i + length)
  end
  return nil
end

-- A reply echoes text from the request (an unknown key or query parameter,
-- the bytes where a body broke), which need not be UTF-8 and may be cut
-- inside a sequence; each byte outside a well-formed sequence becomes U+FFFD.
local function utf8_text(text)
  local out, start = {}, 1
  local i = utf8_break(text, 1)
  if i == nil then
    return text
  end
  while i do
    out[#out + 1] = sub(text, start, i - 1)
    out[#out + 1] = "\239\191\189"
    start = i + 1
    i = utf8_break(text, start)
  end
  out[#out + 1] = sub(text, start)
  return concat(out)
end

local ESCAPES = {[34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t"}

local function utf8(code)
  if code < 0x80 then
    return string.char(code)
  elseif code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
    0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

-- Reads a string at P (which is at its opening quote). Returns its decoded
-- text when `decode` is set (keys, enum names, formatted values), else nil.
local function read_string(decode)
  local start = P + 1
  local stop = find(S, '["\\%z\1-\31]', start)
  if stop ~= nil and byte(S, stop) == 34 then
    -- No escapes: the common case, without building parts.
    P = stop + 1
    return decode and sub(S, start, stop - 1) or nil
  end
  local pos = start
  local parts = decode and {} or nil
  while true do
    local stop = find(S, '["\\%z\1-\31]', pos)
    if stop == nil then
      P = #S + 1
      syntax("a string is not closed")
    end
    local c = byte(S, stop)
    if decode and stop > pos then
      parts[#parts + 1] = sub(S, pos, stop - 1)
    end
    if c == 34 then
      P = stop + 1
      return decode and concat(parts) or nil
    elseif c == 92 then
      local e = byte(S, stop + 1)
      if e == 117 then
        local hex = sub(S, stop + 2, stop + 5)
        if not find(hex, "^%x%x%x%x$") then
          P = stop
          syntax("\\u must be followed by four hex digits")
        end
        if decode then
          parts[#parts + 1] = utf8(tonumber(hex, 16))
        end
        pos = stop + 6
      elseif e ~= nil and ESCAPES[e] then
        if decode then
          parts[#parts + 1] = ESCAPES[e]
        end
        pos = stop + 2
      else
        P = stop
        syntax("unknown escape in a string")
      end
    else
      P = stop
      syntax("a control character inside a string (escape it)")
    end
  end
end

-- Reads a number at P; returns its text.
local function read_number()
  local _, last = find(S, "^-?%d+", P)
  if last == nil then
    syntax("expected a value, found " .. describe_at())
  end
  local digits = sub(S, P, last)
  if find(digits, "^-?0%d") then
    syntax("a number has a leading zero")
  end
  local e = last
  local _, frac = find(S, "^%.%d+", e + 1)
  if frac then
    e = frac
  elseif byte(S, e + 1) == 46 then
    P = e + 1
    syntax("a number's decimal point needs digits after it")
  end
  local _, exp = find(S, "^[eE][-+]?%d+", e + 1)
  if exp then
    e = exp
  end
  local text = sub(S, P, e)
  P = e + 1
  return text
end

local function expect_literal(word)
  if sub(S, P, P + #word - 1) ~= word then
    syntax("expected a value, found " .. describe_at())
  end
  P = P + #word
end

-- Containers are walked with open_container / next_member loops rather than
-- callbacks: LuaJIT cannot compile a function that creates closures, and
-- this is the loop a 1,000,000-job CreateDag runs through.

-- At an opening bracket: enters it and returns true, or returns false for
-- an empty container (already left).
local function open_container(close)
  DEPTH = DEPTH + 1
  if DEPTH > MAX_DEPTH then
    syntax(format("nested deeper than %d levels", MAX_DEPTH))
  end
  P = P + 1
  skip_ws()
  if byte(S, P) == close then
    P = P + 1
    DEPTH = DEPTH - 1
    return false
  end
  return true
end

-- After a member: returns true if another one follows, false once the
-- container is closed.
local function next_member(close)
  skip_ws()
  local c = byte(S, P)
  if c == 44 then
    P = P + 1
    skip_ws()
    if byte(S, P) == close then
      syntax("a trailing comma")
    end
    return true
  elseif c == close then
    P = P + 1
    DEPTH = DEPTH - 1
    return false
  end
  syntax(format("expected ',' or '%s', found %s", string.char(close), describe_at()))
end

local function read_key()
  skip_ws()
  if byte(S, P) ~= 34 then
    syntax("expected a double-quoted key, found " .. describe_at())
  end
  local key = read_string(true)
  skip_ws()
  if byte(S, P) ~= 58 then
    syntax("expected ':' after a key, found " .. describe_at())
  end
  P = P + 1
  skip_ws()
  return key
end

-- Reads any JSON value at P without a type to check it against.
local function skip_value()
  local c = byte(S, P)
  if c == 123 then
    if open_container(125) then
      repeat
        read_key()
        skip_value()
      until not next_member(125)
    end
  elseif c == 91 then
    if open_container(93) then
      repeat
        skip_value()
      until not next_member(93)
    end
  elseif c == 34 then
    read_string(false)
  elseif c == 116 then
    expect_literal("true")
  elseif c == 102 then
    expect_literal("false")
  elseif c == 110 then
    expect_literal("null")
  else
    read_number()
  end
end

local JSON_TYPE = {[123] = "an object", [91] = "an array", [34] = "a string", [116] = "a boolean",
                   [102] = "a boolean", [110] = "null"}

local function json_type()
  return JSON_TYPE[byte(S, P)] or "a number"
end

local INT_LIMITS = {
  int32 = {"-2147483648", "2147483647"},
  uint32 = {"0", "4294967295"},
  int64 = {"-9223372036854775808", "9223372036854775807"},
  uint64 = {"0", "18446744073709551615"},
}

-- Whether the integer text `n` lies within [lo, hi] (decimal strings, so
-- 64-bit limits compare exactly).
local function within(n, lo, hi)
  local function cmp(a, b)
    local na, nb = sub(a, 1, 1) == "-", sub(b, 1, 1) == "-"
    if na ~= nb then
      return na and -1 or 1
    end
    local da, db = na and sub(a, 2) or a, nb and sub(b, 2) or b
    local r
    if #da ~= #db then
      r = #da < #db and -1 or 1
    elseif da == db then
      r = 0
    else
      r = da < db and -1 or 1
    end
    return na and -r or r
  end
  if n == "-0" then
    n = "0"
  end
  return cmp(n, lo) >= 0 and cmp(n, hi) <= 0
end

local function check_integer(text, kind)
  if not find(text, "^-?%d+$") then
    wrong(format("expected a whole number (%s), got %s", kind, text))
    return
  end
  local limits = INT_LIMITS[kind]
  if not within(text, limits[1], limits[2]) then
    wrong(format("%s is out of range for %s (%s to %s)", text, kind, limits[1], limits[2]), "OUT_OF_RANGE")
  end
end

local function enum_choices(enum)
  return concat(enum.names, ", ")
end

local function check_enum_name(name, type_name)
  local enum = ENUMS[type_name]
  for _, known in ipairs(enum.names) do
    if known == name then
      return true
    end
  end
  return false
end

local DURATION = "^%-?%d+s$"
local DURATION_FRACTION = "^%-?%d+%.%d%d?%d?%d?%d?%d?%d?%d?%d?s$"
local TIMESTAMP = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d"

local function timestamp_ok(text)
  local _, e = find(text, TIMESTAMP)
  if e == nil then
    return false
  end
  local rest = sub(text, e + 1)
  rest = rest:gsub("^%.%d%d?%d?%d?%d?%d?%d?%d?%d?", "", 1)
  return rest == "Z" or find(rest, "^[-+]%d%d:%d%d$") ~= nil
end

local check_message -- forward

-- Reads the value at P and checks it against a field of kind `kind`
-- (`type_name` for enums and messages). Lists and maps are handled by the
-- caller; this is one value.
local function check_single(kind, type_name)
  local c = byte(S, P)
  if c == 110 and kind ~= "value" then
    -- proto3 JSON: null means "not set" for any field.
    expect_literal("null")
    return
  end
  if kind == "message" then
    if c ~= 123 then
      wrong("expected an object, got " .. json_type())
      skip_value()
      return
    end
    check_message(type_name)
  elseif kind == "struct" then
    if c ~= 123 then
      wrong("expected an object, got " .. json_type())
    end
    skip_value()
  elseif kind == "list" then
    if c ~= 91 then
      wrong("expected an array, got " .. json_type())
    end
    skip_value()
  elseif kind == "value" then
    skip_value()
  elseif kind == "string" or kind == "bytes" then
    if c ~= 34 then
      wrong("expected a string, got " .. json_type())
      skip_value()
      return
    end
    local text = read_string(kind == "bytes")
    if kind == "bytes" and not find(text, "^[%w+/_-]*=?=?$") then
      wrong("expected base64 text", "INVALID_FORMAT")
    end
  elseif kind == "bool" then
    if c == 116 then
      expect_literal("true")
    elseif c == 102 then
      expect_literal("false")
    else
      wrong("expected true or false, got " .. json_type())
      skip_value()
    end
  elseif kind == "int32" or kind == "uint32" or kind == "int64" or kind == "uint64" then
    if c == 34 then
      -- proto3 JSON allows integers as strings (int64 is printed that way).
      check_integer(read_string(true), kind)
    elseif c == 45 or (c ~= nil and c >= 48 and c <= 57) then
      check_integer(read_number(), kind)
    else
      wrong(format("expected a whole number (%s), got %s", kind, json_type()))
      skip_value()
    end
  elseif kind == "double" then
    if c == 34 then
      local text = read_string(true)
      if text ~= "NaN" and text ~= "Infinity" and text ~= "-Infinity" and tonumber(text) == nil then
        wrong("expected a number, got a string", "WRONG_TYPE")
      end
    elseif c == 45 or (c ~= nil and c >= 48 and c <= 57) then
      read_number()
    else
      wrong("expected a number, got " .. json_type())
      skip_value()
    end
  elseif kind == "enum" then
    local enum = ENUMS[type_name]
    if c == 34 then
      local name = read_string(true)
      if not check_enum_name(name, type_name) then
        wrong(format("%q is not a %s; use one of %s", name, enum.label, enum_choices(enum)), "UNKNOWN_VALUE")
      end
    elseif c == 45 or (c ~= nil and c >= 48 and c <= 57) then
      local text = read_number()
      if not enum.numbers[tonumber(text)] or not find(text, "^-?%d+$") then
        wrong(format("%s is not a %s; use one of %s", text, enum.label, enum_choices(enum)), "UNKNOWN_VALUE")
      end
    else
      wrong(format("expected a %s name (one of %s), got %s", enum.label, enum_choices(enum), json_type()))
      skip_value()
    end
  elseif kind == "duration" then
    if c ~= 34 then
      wrong('expected a duration string such as "90s" or "1.5s", got ' .. json_type())
      skip_value()
      return
    end
    local text = read_string(true)
    if not (find(text, DURATION) or find(text, DURATION_FRACTION)) then
      wrong(format('%q is not a duration; write seconds with an "s", such as "90s" or "1.5s"', text), "INVALID_FORMAT")
    end
  elseif kind == "timestamp" then
    if c ~= 34 then
      wrong('expected an RFC 3339 timestamp string such as "2026-01-02T03:04:05Z", got ' .. json_type())
      skip_value()
      return
    end
    local text = read_string(true)
    if not timestamp_ok(text) then
      wrong(format('%q is not an RFC 3339 timestamp such as "2026-01-02T03:04:05Z"', text), "INVALID_FORMAT")
    end
  else
    skip_value()
  end
end

-- Reads the value of one field (a list, a map or a single value).
local function check_field(field)
  local c = byte(S, P)
  if field.repeated then
    if c == 110 then
      expect_literal("null")
      return
    end
    if c ~= 91 then
      wrong("expected an array, got " .. json_type())
      skip_value()
      return
    end
    if open_container(93) then
      local index = 0
      repeat
        PATH[#PATH + 1] = index
        if byte(S, P) == 110 then
          wrong("null is not allowed in a list")
        end
        check_single(field.kind, field.type)
        PATH[#PATH] = nil
        index = index + 1
      until not next_member(93)
    end
  elseif field.kind == "map" then
    if c == 110 then
      expect_literal("null")
      return
    end
    if c ~= 123 then
      wrong("expected an object, got " .. json_type())
      skip_value()
      return
    end
    if open_container(125) then
      repeat
        local key = read_key()
        PATH[#PATH + 1] = "[" .. key .. "]"
        check_single(field.value_kind, field.type)
        PATH[#PATH] = nil
      until not next_member(125)
    end
  else
    check_single(field.kind, field.type)
  end
end

check_message = function(type_name)
  local fields = MESSAGES[type_name]
  if not open_container(125) then
    return
  end
  local given = {}
  repeat
    local key = read_key()
    local field = fields[key]
    if field == nil then
      PATH[#PATH + 1] = key
      wrong("unknown field", "UNKNOWN_FIELD")
      PATH[#PATH] = nil
      skip_value()
    else
      local name = field.name
      PATH[#PATH + 1] = name
      if given[name] then
        wrong("given more than once", "DUPLICATE")
      end
      given[name] = true
      check_field(field)
      PATH[#PATH] = nil
    end
  until not next_member(125)
end

-- Checks a whole body against message `type_name`; returns the violations.
local function check_body(text, type_name)
  S, P, PATH, DEPTH, FOUND = text, 1, {}, 0, {}
  local ok, err = pcall(function()
    -- The transcoder refuses such text too, but in a shape of its own.
    local broken = utf8_break(S, 1)
    if broken then
      P = broken
      syntax("a byte that is not UTF-8")
    end
    skip_ws()
    if P > #S then
      -- An empty body is an empty message, as the transcoder reads it.
      return
    end
    if byte(S, P) ~= 123 then
      if find(S, "^[%[\"tfn%-%d]", P) then
        violation("", "the body must be a JSON object, got " .. json_type(), "WRONG_TYPE")
        return
      end
      syntax("expected an object, found " .. describe_at())
    end
    check_message(type_name)
    skip_ws()
    if P <= #S then
      syntax("unexpected text after the JSON value: " .. describe_at())
    end
  end)
  if not ok then
    if type(err) == "table" and err.syntax then
      return {{field = err.field, description = err.description, reason = "INVALID_JSON"}}
    end
    error(err, 0)
  end
  return FOUND
end

-- Query strings -------------------------------------------------------------

local function unescape(text)
  -- The transcoder keeps "+" literal (query_param_unescape_plus is off).
  return (text:gsub("%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end))
end

local function query_names(query)
  local names = {}
  for name, field in pairs(query) do
    if name == field.name then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  return names
end

-- Percent-decoded path variables and query values become protobuf strings,
-- which must be UTF-8: the server cannot even decode a request that holds
-- other bytes (it would answer 500).
local NOT_UTF8 = "must be UTF-8 once percent-decoded"

local function check_query_value(field, value)
  if utf8_break(value, 1) then
    return NOT_UTF8, "INVALID_FORMAT"
  end
  local kind = field.kind
  local bad
  if kind == "enum" then
    local enum = ENUMS[field.type]
    local number = find(value, "^-?%d+$") and tonumber(value)
    if not check_enum_name(value, field.type) and not (number and enum.numbers[number]) then
      return format("%q is not a %s; use one of %s", value, enum.label, enum_choices(enum)), "UNKNOWN_VALUE"
    end
  elseif kind == "bool" then
    if value ~= "true" and value ~= "false" then
      bad = "expected true or false"
    end
  elseif INT_LIMITS[kind] then
    if not find(value, "^-?%d+$") then
      bad = format("expected a whole number (%s)", kind)
    elseif not within(value, INT_LIMITS[kind][1], INT_LIMITS[kind][2]) then
      return format("%s is out of range for %s", value, kind), "OUT_OF_RANGE"
    end
  elseif kind == "double" then
    if tonumber(value) == nil then
      bad = "expected a number"
    end
  elseif kind == "duration" then
    if not (find(value, DURATION) or find(value, DURATION_FRACTION)) then
      bad = 'expected a duration such as "90s"'
    end
  elseif kind == "timestamp" then
    if not timestamp_ok(value) then
      bad = 'expected an RFC 3339 timestamp such as "2026-01-02T03:04:05Z"'
    end
  end
  if bad then
    return format("%s, got %q", bad, value), "WRONG_TYPE"
  end
  return nil
end

local function check_query(route, query_string, found)
  if query_string == nil or query_string == "" then
    return
  end
  local given = {}
  for pair in query_string:gmatch("[^&]+") do
    local raw_name, raw_value = pair:match("^([^=]*)=?(.*)$")
    local name, value = unescape(raw_name), unescape(raw_value)
    local field = route.query[name]
    if field == nil then
      local accepted = query_names(route.query)
      local hint = #accepted > 0 and ("accepted: " .. concat(accepted, ", "))
        or "this endpoint takes no query parameters"
      if #found < MAX_VIOLATIONS then
        found[#found + 1] = {field = name, description = "unknown query parameter (" .. hint .. ")",
                             reason = "UNKNOWN_FIELD"}
      end
    else
      if given[field.name] and not field.repeated and #found < MAX_VIOLATIONS then
        found[#found + 1] = {field = field.name, description = "given more than once", reason = "DUPLICATE"}
      end
      given[field.name] = true
      local description, reason = check_query_value(field, value)
      if description and #found < MAX_VIOLATIONS then
        found[#found + 1] = {field = field.name, description = description, reason = reason}
      end
    end
  end
end

-- Path variables --------------------------------------------------------------

-- Segment by segment against the route's template; empty segments count,
-- as the route's pattern lets them through.
local function check_path(route, path, found)
  local names = {}
  for segment in route.template:gmatch("/([^/]*)") do
    names[#names + 1] = segment:match("^{([^}=]+)") or false
  end
  local i = 0
  for segment in path:gmatch("/([^/]*)") do
    i = i + 1
    if names[i] and utf8_break(unescape(segment), 1) and #found < MAX_VIOLATIONS then
      found[#found + 1] = {field = names[i], description = NOT_UTF8, reason = "INVALID_FORMAT"}
    end
  end
end

-- The reply ----------------------------------------------------------------

local JSON_ESCAPES = {['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
                      ["\r"] = "\\r", ["\t"] = "\\t"}

local function json_string(text)
  return '"' .. utf8_text(text):gsub('[%z\1-\31"\\]', function(c)
    return JSON_ESCAPES[c] or format("\\u%04x", byte(c))
  end) .. '"'
end

-- The same body the server sends for INVALID_ARGUMENT (see
-- chronosched_server/api/interceptor.py), rendered as Envoy renders it.
local function error_body(found)
  local shown, items = {}, {}
  for i, v in ipairs(found) do
    if i <= 5 then
      shown[#shown + 1] = (v.field ~= "" and (v.field .. ": ") or "") .. v.description
    end
    items[#items + 1] = format('{"field":%s,"description":%s,"reason":%s}',
      json_string(v.field), json_string(v.description), json_string(v.reason))
  end
  local message = "invalid request: " .. concat(shown, "; ")
  if #found > 5 then
    message = message .. format(" (and %d more)", #found - 5)
  end
  local reason = found[1].reason == "INVALID_JSON" and "INVALID_JSON" or "INVALID_ARGUMENT"
  return format('{"code":3,"message":%s,"details":[' ..
    '{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":%s,"domain":"chronosched.dev","metadata":{}},' ..
    '{"@type":"type.googleapis.com/google.rpc.BadRequest","field_violations":[%s]}]}',
    json_string(message), json_string(reason), concat(items, ","))
end

local function find_route(method, path)
  for _, route in ipairs(ROUTES) do
    if route.method == method and find(path, route.pattern) then
      return route
    end
  end
  return nil
end

function envoy_on_request(request)
  local headers = request:headers()
  headers:remove(REFUSED_HEADER)
  local full = headers:get(":path")
  if full == nil then
    return
  end
  local content_type = headers:get("content-type") or ""
  if find(content_type, "^application/grpc") then
    return
  end

  -- /api/v1/healthz is /healthz under the REST prefix. The transcoder only
  -- maps the descriptor's paths (Healthz binds /healthz), so the path is
  -- rewritten before it looks. Envoy's header-mutation filters refuse to
  -- touch :path; Lua may. x-envoy-original-path keeps the path the client
  -- sent for error messages.
  local rest = full:match("^/api/v1/healthz(.*)$")
  if rest ~= nil and (rest:match("^/*$") or rest:match("^/*%?")) then
    headers:replace("x-envoy-original-path", full)
    headers:replace(":path", "/healthz" .. rest)
    full = "/healthz" .. rest
  end

  local path, query = full:match("^([^?]*)%??(.*)$")
  local route = find_route(headers:get(":method"), path)
  if route == nil then
    return
  end
  -- A fault in this script must not let a request through unchecked
  -- (Envoy would carry on as if the filter were not there): it is a 500.
  local ok, found = pcall(function()
    local found = {}
    check_path(route, path, found)
    check_query(route, query, found)
    if route.body then
      local body = request:body()
      local text = body and body:getBytes(0, body:length()) or ""
      for _, v in ipairs(check_body(text, route.body)) do
        if #found < MAX_VIOLATIONS then
          found[#found + 1] = v
        end
      end
    end
    return found
  end)
  if not ok then
    request:logErr("REST check failed: " .. tostring(found))
    -- Headers fetched before body() are out of scope once it has yielded.
    request:headers():replace(REFUSED_HEADER, "failed")
    request:respond({[":status"] = "500", ["content-type"] = "application/json"},
      '{"code":13,"message":"internal error in the REST check","details":[]}')
  elseif #found > 0 then
    request:headers():replace(REFUSED_HEADER, "refused")
    request:respond({[":status"] = "400", ["content-type"] = "application/json"}, error_body(found))
  end
end
