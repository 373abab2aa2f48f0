#include "src/io/unpickler.hpp"

#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include <xcaption/errors.hpp>

namespace xcaption {

namespace {

// ref: torch/storage.py (_LegacyStorage subclasses) and torch/__init__.py (the typed storage
// classes exported as torch.<Name>Storage). Quantized storages are left out on purpose.
constexpr TorchStorageType kStorageTypes[] = {
    {"FloatStorage", 4, "F32", true, DType::F32},
    {"HalfStorage", 2, "F16", true, DType::F16},
    {"BFloat16Storage", 2, "BF16", true, DType::BF16},
    {"DoubleStorage", 8, "F64", false, DType::F32},
    {"LongStorage", 8, "I64", false, DType::F32},
    {"IntStorage", 4, "I32", false, DType::F32},
    {"ShortStorage", 2, "I16", false, DType::F32},
    {"CharStorage", 1, "I8", false, DType::F32},
    {"ByteStorage", 1, "U8", false, DType::F32},
    {"BoolStorage", 1, "BOOL", false, DType::F32},
    {"ComplexFloatStorage", 8, "C64", false, DType::F32},
    {"ComplexDoubleStorage", 16, "C128", false, DType::F32},
};

enum class Kind : std::uint8_t { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };

// With its article, for messages: "the value of 'x' is an int".
const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "a bool";
    case Kind::Int: return "an int";
    case Kind::Float: return "a float";
    case Kind::String: return "a string";
    case Kind::Tuple: return "a tuple";
    case Kind::List: return "a list";
    case Kind::Dict: return "a dict";
    case Kind::Global: return "a class or function";
    case Kind::Storage: return "a storage";
    case Kind::Tensor: return "a tensor";
  }
  return "?";
}

enum class Global : std::uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, RebuildParameterWithState, Storage };

// One value the pickle built. Containers refer to their elements by index into the node arena, so
// nothing (destruction included) ever recurses over the object graph.
struct Node {
  Kind kind = Kind::None;
  std::uint32_t depth = 1;  // nesting as built (containers only grow it)
  std::int64_t i = 0;  // Int/Bool value; String, Storage, Tensor: index into their tables; Global: Global
  double f = 0;        // Float value; Global::Storage: index into kStorageTypes
  std::vector<std::uint32_t> items;  // Tuple/List elements; Dict: key, value, key, value, ...
};

struct TensorRecord {
  std::size_t storage;
  std::int64_t offset;
  std::vector<std::int64_t> size, stride;
};

const char* opcode_name(unsigned char op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

bool valid_utf8(const unsigned char* s, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07;
    else return false;
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff)
      return false;
    i += len;  // surrogates are let through, as Python's 'surrogatepass' does
  }
  return true;
}

// For messages: control characters escaped, long text cut.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 120)) {
    if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  if (s.size() > 120) out += "...";
  return out;
}

class Unpickler {
 public:
  Unpickler(std::span<const unsigned char> bytes, const std::string& file, const PickleLimits& limits)
      : b_(bytes.data()), n_(bytes.size()), file_(file), lim_(limits) {}

  PickledStateDict run();

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw FormatError(fmt::format("{}: data.pkl: {}", file_, what));
  }
  std::string op_here() const { return fmt::format("{} at byte {}", opcode_name(op_) ? opcode_name(op_) : "?", at_); }
  const unsigned char* need(std::size_t k) {
    if (n_ - pos_ < k) fail(fmt::format("ends inside {} (truncated pickle)", op_here()));
    const unsigned char* p = b_ + pos_;
    pos_ += k;
    return p;
  }
  std::uint32_t le32(const unsigned char* p) const {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
  }
  std::uint64_t le64(const unsigned char* p) const {
    return static_cast<std::uint64_t>(le32(p)) | (static_cast<std::uint64_t>(le32(p + 4)) << 32);
  }

  std::uint32_t make(Node node) {
    if (nodes_.size() >= lim_.max_objects)
      fail(fmt::format("builds more than {} values (limit), at {}", lim_.max_objects, op_here()));
    nodes_.push_back(std::move(node));
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }
  std::uint32_t make_scalar(Kind k, std::int64_t i = 0, double f = 0) {
    Node node;
    node.kind = k;
    node.i = i;
    node.f = f;
    return make(std::move(node));
  }
  void push(std::uint32_t v) {
    if (stack_.size() >= lim_.max_stack)
      fail(fmt::format("stack grows past {} values (limit), at {}", lim_.max_stack, op_here()));
    stack_.push_back(v);
  }
  std::size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
  std::uint32_t pop() {
    if (stack_.size() <= fence()) fail(fmt::format("stack underflow at {}", op_here()));
    const std::uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::uint32_t top() const {
    if (stack_.size() <= fence()) fail(fmt::format("stack underflow at {}", op_here()));
    return stack_.back();
  }
  // The values pushed since the last MARK, which is closed.
  std::vector<std::uint32_t> pop_mark() {
    if (marks_.empty()) fail(fmt::format("{} without a preceding MARK", op_here()));
    const std::size_t start = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(start), stack_.end());
    stack_.resize(start);
    return items;
  }
  void grow_depth(Node& container, std::uint32_t child_depth) {
    if (child_depth + 1 > container.depth) container.depth = child_depth + 1;
    if (container.depth > lim_.max_depth)
      fail(fmt::format("containers nested deeper than {} levels (limit), at {}", lim_.max_depth, op_here()));
  }
  std::uint32_t make_tuple(std::vector<std::uint32_t> items) {
    Node t;
    t.kind = Kind::Tuple;
    for (auto v : items) grow_depth(t, nodes_[v].depth);
    t.items = std::move(items);
    return make(std::move(t));
  }
  Node& node(std::uint32_t v) { return nodes_[v]; }
  Kind kind(std::uint32_t v) const { return nodes_[v].kind; }
  const std::string& str(std::uint32_t v) const { return strings_[static_cast<std::size_t>(nodes_[v].i)]; }

  void read_string(std::uint64_t len) {
    if (len > lim_.max_string)
      fail(fmt::format("string of {} bytes at {} exceeds the {}-byte limit", len, op_here(), lim_.max_string));
    if (len > n_ - pos_) fail(fmt::format("ends inside {} (truncated pickle)", op_here()));
    const unsigned char* p = need(static_cast<std::size_t>(len));
    if (!valid_utf8(p, static_cast<std::size_t>(len))) fail(fmt::format("string at {} is not valid UTF-8", op_here()));
    string_total_ += static_cast<std::size_t>(len);
    if (string_total_ > lim_.max_string_total)
      fail(fmt::format("strings exceed {} bytes in all (limit), at {}", lim_.max_string_total, op_here()));
    strings_.emplace_back(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len));
    push(make_scalar(Kind::String, static_cast<std::int64_t>(strings_.size() - 1)));
  }
  std::string read_line() {
    const std::size_t max_line = 256;
    const std::size_t avail = std::min(n_ - pos_, max_line + 1);
    const void* nl = std::memchr(b_ + pos_, '\n', avail);
    if (!nl) {
      if (avail > max_line) fail(fmt::format("{} names a global longer than {} bytes", op_here(), max_line));
      fail(fmt::format("ends inside {} (truncated pickle)", op_here()));
    }
    const std::size_t len = static_cast<const unsigned char*>(nl) - (b_ + pos_);
    std::string s(reinterpret_cast<const char*>(b_ + pos_), len);
    pos_ += len + 1;
    return s;
  }
  void push_global(const std::string& module, const std::string& name);
  void memo_put(std::uint32_t key) {
    const std::uint32_t v = top();
    auto it = memo_.find(key);
    if (it == memo_.end() && memo_.size() >= lim_.max_memo)
      fail(fmt::format("memo grows past {} entries (limit), at {}", lim_.max_memo, op_here()));
    memo_[key] = v;
  }
  void memo_get(std::uint32_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail(fmt::format("{} reads memo entry {}, which was never stored", op_here(), key));
    push(it->second);
  }
  void set_items(std::uint32_t target, const std::vector<std::uint32_t>& kv) {
    if (kind(target) != Kind::Dict)
      fail(fmt::format("{} stores into {}, not a dict", op_here(), kind_name(kind(target))));
    if (kv.size() % 2 != 0) fail(fmt::format("{} with an odd number of values ({})", op_here(), kv.size()));
    Node& d = node(target);
    for (std::size_t i = 0; i < kv.size(); i += 2) {
      grow_depth(d, std::max(nodes_[kv[i]].depth, nodes_[kv[i + 1]].depth));
      d.items.push_back(kv[i]);
      d.items.push_back(kv[i + 1]);
    }
  }
  void append(std::uint32_t target, const std::vector<std::uint32_t>& values) {
    if (kind(target) != Kind::List)
      fail(fmt::format("{} appends to {}, not a list", op_here(), kind_name(kind(target))));
    Node& l = node(target);
    for (auto v : values) {
      grow_depth(l, nodes_[v].depth);
      l.items.push_back(v);
    }
  }
  void reduce();
  void persistent_load();
  void build();
  PickledStateDict finish(std::uint32_t root);

  std::int64_t int_arg(std::uint32_t v, const char* what, const char* fn) const {
    if (kind(v) != Kind::Int || nodes_[v].i < 0)
      fail(fmt::format("{}: {} must be an integer >= 0, got {}{}", fn, what, kind_name(kind(v)),
                       kind(v) == Kind::Int ? fmt::format(" {}", nodes_[v].i) : ""));
    return nodes_[v].i;
  }
  std::vector<std::int64_t> int_tuple(std::uint32_t v, const char* what, const char* fn) const {
    if (kind(v) != Kind::Tuple) fail(fmt::format("{}: {} must be a tuple of integers, got {}", fn, what, kind_name(kind(v))));
    const auto& items = nodes_[v].items;
    if (items.size() > lim_.max_rank)
      fail(fmt::format("{}: {} has {} dimensions, more than the {} accepted", fn, what, items.size(), lim_.max_rank));
    std::vector<std::int64_t> out;
    out.reserve(items.size());
    for (auto x : items) out.push_back(int_arg(x, what, fn));
    return out;
  }

  const unsigned char* b_;
  std::size_t n_;
  std::size_t pos_ = 0;
  std::size_t at_ = 0;  // offset of the opcode being run
  unsigned char op_ = 0;
  const std::string& file_;
  const PickleLimits& lim_;
  std::vector<Node> nodes_;
  std::vector<std::string> strings_;
  std::size_t string_total_ = 0;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint32_t, std::uint32_t> memo_;
  std::vector<PickledStorage> storages_;
  std::map<std::string, std::size_t, std::less<>> storage_by_key_;
  std::vector<TensorRecord> tensors_;
};

void Unpickler::push_global(const std::string& module, const std::string& name) {
  Node g;
  g.kind = Kind::Global;
  if (module == "collections" && name == "OrderedDict") {
    g.i = static_cast<std::int64_t>(Global::OrderedDict);
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    g.i = static_cast<std::int64_t>(Global::RebuildTensorV2);
  } else if (module == "torch._utils" && name == "_rebuild_parameter") {
    g.i = static_cast<std::int64_t>(Global::RebuildParameter);
  } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
    g.i = static_cast<std::int64_t>(Global::RebuildParameterWithState);
  } else if (const TorchStorageType* st = module == "torch" ? find_storage_type(name) : nullptr) {
    g.i = static_cast<std::int64_t>(Global::Storage);
    g.f = static_cast<double>(st - kStorageTypes);
  } else {
    fail(fmt::format(
        "refusing global '{}.{}' ({}): a state dict saved by torch uses only collections.OrderedDict, "
        "torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter[_with_state] and the "
        "torch.*Storage classes, and xcaption runs no other code from a checkpoint",
        printable(module), printable(name), op_here()));
  }
  push(make(std::move(g)));
}

void Unpickler::persistent_load() {
  const std::uint32_t pid = pop();
  // ref: torch/serialization.py _save persistent_id: ('storage', storage_type, key, location, numel)
  const auto& it = nodes_[pid];
  if (it.kind != Kind::Tuple || it.items.size() != 5 || kind(it.items[0]) != Kind::String ||
      str(it.items[0]) != "storage")
    fail(fmt::format("persistent id at {} is not a ('storage', type, key, location, numel) tuple", op_here()));
  const std::uint32_t type = it.items[1], key = it.items[2], loc = it.items[3], numel = it.items[4];
  if (kind(type) != Kind::Global || nodes_[type].i != static_cast<std::int64_t>(Global::Storage))
    fail(fmt::format("persistent id at {}: the storage type is {}, not a torch.*Storage class", op_here(),
                     kind_name(kind(type))));
  if (kind(key) != Kind::String || kind(loc) != Kind::String)
    fail(fmt::format("persistent id at {}: the storage key and location must be strings", op_here()));
  const std::string& k = str(key);
  bool bad_key = k.empty() || k.size() > 255 || k == "." || k == "..";
  for (unsigned char c : k) bad_key = bad_key || c < 0x20 || c == '/' || c == '\\' || c == 0x7f;
  if (bad_key) fail(fmt::format("persistent id at {}: storage key '{}' is not a record name", op_here(), printable(k)));
  const std::int64_t count = int_arg(numel, "the element count", "persistent id");
  const TorchStorageType* st = &kStorageTypes[static_cast<std::size_t>(nodes_[type].f)];
  std::size_t index;
  auto found = storage_by_key_.find(k);
  if (found != storage_by_key_.end()) {
    index = found->second;
    const PickledStorage& s = storages_[index];
    if (s.type != st || s.numel != static_cast<std::uint64_t>(count))
      fail(fmt::format("storage '{}' is declared as {} elements of torch.{} and, at {}, as {} of torch.{}",
                       printable(k), s.numel, s.type->name, op_here(), count, st->name));
  } else {
    index = storages_.size();
    storages_.push_back({k, st, str(loc), static_cast<std::uint64_t>(count)});
    storage_by_key_.emplace(k, index);
  }
  push(make_scalar(Kind::Storage, static_cast<std::int64_t>(index)));
}

void Unpickler::reduce() {
  const std::uint32_t args = pop();
  const std::uint32_t fn = pop();
  if (kind(fn) != Kind::Global)
    fail(fmt::format("{} calls {}, not an accepted global", op_here(), kind_name(kind(fn))));
  if (kind(args) != Kind::Tuple)
    fail(fmt::format("{}: the arguments are {}, not a tuple", op_here(), kind_name(kind(args))));
  const std::vector<std::uint32_t> a = nodes_[args].items;  // copy: make() may grow nodes_
  const auto empty_dict = [&](std::uint32_t v) { return kind(v) == Kind::Dict && nodes_[v].items.empty(); };
  switch (static_cast<Global>(nodes_[fn].i)) {
    case Global::OrderedDict: {
      if (!a.empty())
        fail(fmt::format("{}: collections.OrderedDict called with {} arguments (a state dict calls it with none)",
                         op_here(), a.size()));
      Node d;
      d.kind = Kind::Dict;
      push(make(std::move(d)));
      return;
    }
    case Global::RebuildTensorV2: {
      const char* f = "torch._utils._rebuild_tensor_v2";
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (a.size() != 6 && a.size() != 7)
        fail(fmt::format("{}: {} called with {} arguments, expected 6 or 7", op_here(), f, a.size()));
      if (kind(a[0]) != Kind::Storage)
        fail(fmt::format("{}: {}: the first argument is {}, not a storage", op_here(), f, kind_name(kind(a[0]))));
      TensorRecord t;
      t.storage = static_cast<std::size_t>(nodes_[a[0]].i);
      t.offset = int_arg(a[1], "storage_offset", f);
      t.size = int_tuple(a[2], "size", f);
      t.stride = int_tuple(a[3], "stride", f);
      if (t.size.size() != t.stride.size())
        fail(fmt::format("{}: {}: size has {} dimensions but stride {}", op_here(), f, t.size.size(), t.stride.size()));
      if (kind(a[4]) != Kind::Bool)
        fail(fmt::format("{}: {}: requires_grad is {}, not a bool", op_here(), f, kind_name(kind(a[4]))));
      if (!empty_dict(a[5]))
        fail(fmt::format("{}: {}: backward_hooks must be an empty OrderedDict", op_here(), f));
      if (a.size() == 7 && kind(a[6]) != Kind::Dict)
        fail(fmt::format("{}: {}: metadata is {}, not a dict", op_here(), f, kind_name(kind(a[6]))));
      tensors_.push_back(std::move(t));
      push(make_scalar(Kind::Tensor, static_cast<std::int64_t>(tensors_.size() - 1)));
      return;
    }
    case Global::RebuildParameter:
    case Global::RebuildParameterWithState: {
      const bool with_state = static_cast<Global>(nodes_[fn].i) == Global::RebuildParameterWithState;
      const char* f = with_state ? "torch._utils._rebuild_parameter_with_state" : "torch._utils._rebuild_parameter";
      // (data, requires_grad, backward_hooks[, state]); the parameter is its data
      const std::size_t want = with_state ? 4 : 3;
      if (a.size() != want) fail(fmt::format("{}: {} called with {} arguments, expected {}", op_here(), f, a.size(), want));
      if (kind(a[0]) != Kind::Tensor)
        fail(fmt::format("{}: {}: the data is {}, not a tensor", op_here(), f, kind_name(kind(a[0]))));
      if (kind(a[1]) != Kind::Bool)
        fail(fmt::format("{}: {}: requires_grad is {}, not a bool", op_here(), f, kind_name(kind(a[1]))));
      if (!empty_dict(a[2])) fail(fmt::format("{}: {}: backward_hooks must be an empty OrderedDict", op_here(), f));
      push(a[0]);
      return;
    }
    case Global::Storage:
      fail(fmt::format("{} calls torch.{} directly; a state dict refers to storages only through persistent ids",
                       op_here(), kStorageTypes[static_cast<std::size_t>(nodes_[fn].f)].name));
  }
}

void Unpickler::build() {
  const std::uint32_t state = pop();
  const std::uint32_t obj = top();
  // torch's Module.state_dict() returns an OrderedDict carrying a `_metadata` attribute (module
  // versions); pickle restores it with BUILD. It does not matter for the weights: dropped.
  if (kind(obj) != Kind::Dict)
    fail(fmt::format("{} sets the state of {} (a state dict only sets its OrderedDict's attributes)", op_here(),
                     kind_name(kind(obj))));
  if (kind(state) != Kind::Dict && kind(state) != Kind::None && kind(state) != Kind::Tuple)
    fail(fmt::format("{}: the state is {}, not a dict", op_here(), kind_name(kind(state))));
}

PickledStateDict Unpickler::finish(std::uint32_t root) {
  if (kind(root) != Kind::Dict)
    fail(fmt::format("the pickled object is {}, not a state dict (a dict of tensors)", kind_name(kind(root))));
  PickledStateDict out;
  out.storages = std::move(storages_);
  const auto& items = nodes_[root].items;
  std::set<std::string_view> seen;
  out.tensors.reserve(items.size() / 2);
  for (std::size_t i = 0; i < items.size(); i += 2) {
    const std::uint32_t k = items[i], v = items[i + 1];
    if (kind(k) != Kind::String)
      fail(fmt::format("the state dict has a key that is {}, not a string", kind_name(kind(k))));
    const std::string& name = str(k);
    if (kind(v) != Kind::Tensor)
      fail(fmt::format("the value of '{}' is {}, not a tensor (a state dict maps names to tensors{})",
                       printable(name), kind_name(kind(v)),
                       kind(v) == Kind::Dict ? "; is this a training checkpoint holding a state dict?" : ""));
    if (!seen.insert(name).second) fail(fmt::format("the key '{}' appears twice in the state dict", printable(name)));
    const TensorRecord& t = tensors_[static_cast<std::size_t>(nodes_[v].i)];
    out.tensors.push_back({name, t.storage, t.offset, t.size, t.stride});
  }
  return out;
}

PickledStateDict Unpickler::run() {
  for (;;) {
    if (pos_ >= n_) fail("ends without a STOP opcode (truncated pickle)");
    at_ = pos_;
    op_ = b_[pos_++];
    switch (op_) {
      case 0x80: {  // PROTO
        const unsigned v = *need(1);
        if (v > 5) fail(fmt::format("pickle protocol {} is newer than the 5 this reader knows", v));
        break;
      }
      case 0x95:  // FRAME: a length prefix for buffered reading; the data follow inline
        need(8);
        break;
      case '}': {  // EMPTY_DICT
        Node d;
        d.kind = Kind::Dict;
        push(make(std::move(d)));
        break;
      }
      case ']': {  // EMPTY_LIST
        Node l;
        l.kind = Kind::List;
        push(make(std::move(l)));
        break;
      }
      case ')':  // EMPTY_TUPLE
        push(make_tuple({}));
        break;
      case '(':  // MARK
        if (marks_.size() >= lim_.max_marks)
          fail(fmt::format("more than {} MARKs open at once (limit), at {}", lim_.max_marks, op_here()));
        marks_.push_back(stack_.size());
        break;
      case 'X':  // BINUNICODE
        read_string(le32(need(4)));
        break;
      case 0x8d:  // BINUNICODE8
        read_string(le64(need(8)));
        break;
      case 0x8c:  // SHORT_BINUNICODE
        read_string(*need(1));
        break;
      case 'J': {  // BININT: signed 32-bit
        const std::uint32_t u = le32(need(4));
        push(make_scalar(Kind::Int, static_cast<std::int32_t>(u)));
        break;
      }
      case 'K':  // BININT1
        push(make_scalar(Kind::Int, *need(1)));
        break;
      case 'M': {  // BININT2
        const unsigned char* p = need(2);
        push(make_scalar(Kind::Int, p[0] | (p[1] << 8)));
        break;
      }
      case 0x8a: {  // LONG1: n bytes, little-endian two's complement
        const unsigned len = *need(1);
        if (len > 8) fail(fmt::format("{}: a {}-byte integer does not fit in 64 bits", op_here(), len));
        const unsigned char* p = need(len);
        std::uint64_t u = 0;
        for (unsigned i = 0; i < len; ++i) u |= static_cast<std::uint64_t>(p[i]) << (8 * i);
        if (len > 0 && len < 8 && (p[len - 1] & 0x80)) u |= ~std::uint64_t{0} << (8 * len);  // sign-extend
        push(make_scalar(Kind::Int, static_cast<std::int64_t>(u)));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const unsigned char* p = need(8);
        std::uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];
        double d;
        std::memcpy(&d, &u, 8);
        push(make_scalar(Kind::Float, 0, d));
        break;
      }
      case 'N':
        push(make_scalar(Kind::None));
        break;
      case 0x88:
        push(make_scalar(Kind::Bool, 1));
        break;
      case 0x89:
        push(make_scalar(Kind::Bool, 0));
        break;
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const std::size_t k = op_ - 0x84u;
        if (stack_.size() - fence() < k) fail(fmt::format("stack underflow at {}", op_here()));
        std::vector<std::uint32_t> items(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
        stack_.resize(stack_.size() - k);
        push(make_tuple(std::move(items)));
        break;
      }
      case 't':  // TUPLE
        push(make_tuple(pop_mark()));
        break;
      case 's': {  // SETITEM
        const std::uint32_t v = pop(), k = pop();
        set_items(top(), {k, v});
        break;
      }
      case 'u': {  // SETITEMS
        const auto kv = pop_mark();
        set_items(top(), kv);
        break;
      }
      case 'a': {  // APPEND
        const std::uint32_t v = pop();
        append(top(), {v});
        break;
      }
      case 'e': {  // APPENDS
        const auto values = pop_mark();
        append(top(), values);
        break;
      }
      case 'q':  // BINPUT
        memo_put(*need(1));
        break;
      case 'r':  // LONG_BINPUT
        memo_put(le32(need(4)));
        break;
      case 0x94:  // MEMOIZE
        memo_put(static_cast<std::uint32_t>(memo_.size()));
        break;
      case 'h':  // BINGET
        memo_get(*need(1));
        break;
      case 'j':  // LONG_BINGET
        memo_get(le32(need(4)));
        break;
      case 'c': {  // GLOBAL: "module\nname\n"
        const std::string module = read_line();
        const std::string name = read_line();
        push_global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const std::uint32_t name = pop(), module = pop();
        if (kind(name) != Kind::String || kind(module) != Kind::String)
          fail(fmt::format("{}: module and name must be strings", op_here()));
        push_global(str(module), str(name));
        break;
      }
      case 'R':
        reduce();
        break;
      case 'b':
        build();
        break;
      case 'Q':
        persistent_load();
        break;
      case '.': {  // STOP
        if (!marks_.empty()) fail(fmt::format("STOP at byte {} with {} MARK(s) still open", at_, marks_.size()));
        if (stack_.size() != 1)
          fail(fmt::format("STOP at byte {} leaves {} values on the stack, expected 1", at_, stack_.size()));
        if (pos_ != n_) fail(fmt::format("{} bytes follow the STOP opcode at byte {}", n_ - pos_, at_));
        return finish(stack_.back());
      }
      default: {
        const char* name = opcode_name(op_);
        if (name)
          fail(fmt::format("opcode {} (0x{:02x}) at byte {} is not one a torch state dict uses; refused", name, op_, at_));
        fail(fmt::format("byte 0x{:02x} at offset {} is not a pickle opcode", op_, at_));
      }
    }
  }
}

}  // namespace

const TorchStorageType* find_storage_type(std::string_view name) {
  for (const auto& t : kStorageTypes)
    if (name == t.name) return &t;
  return nullptr;
}

PickledStateDict unpickle_state_dict(std::span<const unsigned char> pickle, const std::string& file,
                                     const PickleLimits& limits) {
  Unpickler u(pickle, file, limits);
  return u.run();
}

}  // namespace xcaption
