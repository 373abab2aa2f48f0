// pytorch_model.bin reading: the zip reader (stored entries, data descriptors, ZIP64 records
// crafted by hand), the restricted unpickler (accepted opcodes and globals, every refusal and
// limit) and the tensor views of a torch archive (bounds, strides, dtypes, storage sharing).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <xcaption/errors.hpp>

#include "src/io/torch_checkpoint.hpp"
#include "src/io/unpickler.hpp"
#include "src/io/weights.hpp"
#include "src/io/zip_archive.hpp"
#include "tests/test_util.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using namespace xcaption;

namespace {

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  FAIL("no FormatError was thrown");
  return {};
}

void put16(std::string& s, std::uint32_t v) {
  s += static_cast<char>(v & 0xff);
  s += static_cast<char>((v >> 8) & 0xff);
}
void put32(std::string& s, std::uint32_t v) {
  put16(s, v & 0xffff);
  put16(s, v >> 16);
}
void put64(std::string& s, std::uint64_t v) {
  put32(s, static_cast<std::uint32_t>(v));
  put32(s, static_cast<std::uint32_t>(v >> 32));
}

// ---------------------------------------------------------------------------------------------
// A zip writer with the knobs the tests need (ref: APPNOTE 4.3).

struct Member {
  std::string name;
  std::string data;
  std::uint16_t method = 0;
  std::uint16_t flags = 0;
  bool descriptor = false;  // bit 3: local CRC/sizes zero, a data descriptor after the data
  bool zip64 = false;       // central sizes and offset saturated, given in a ZIP64 extra field
  std::string local_name;   // when non-empty, the local header names this instead
  std::int64_t crc_delta = 0;  // added to the recorded CRC
};

struct ZipOptions {
  bool zip64_end = false;  // ZIP64 end record + locator, classic fields saturated
  std::string comment;
  std::uint16_t disk = 0;
};

std::string make_zip(const std::vector<Member>& members, const ZipOptions& o = {}) {
  std::string out, cd;
  for (const auto& m : members) {
    const std::uint32_t crc = static_cast<std::uint32_t>(
        crc32(reinterpret_cast<const unsigned char*>(m.data.data()), m.data.size()) + m.crc_delta);
    const std::uint64_t offset = out.size();
    const std::uint16_t flags = m.flags | (m.descriptor ? 0x0008 : 0);
    const std::string lname = m.local_name.empty() ? m.name : m.local_name;
    // local header
    put32(out, 0x04034b50);
    put16(out, 20);
    put16(out, flags);
    put16(out, m.method);
    put16(out, 0);
    put16(out, 0);
    put32(out, m.descriptor ? 0 : crc);
    put32(out, m.descriptor ? 0 : static_cast<std::uint32_t>(m.data.size()));
    put32(out, m.descriptor ? 0 : static_cast<std::uint32_t>(m.data.size()));
    put16(out, static_cast<std::uint32_t>(lname.size()));
    // torch pads the local extra field so that data start on a 64-byte boundary ("FB" field)
    const std::size_t before = out.size() + 2 + lname.size() + 4;
    const std::size_t pad = (64 - before % 64) % 64;
    put16(out, static_cast<std::uint32_t>(4 + pad));
    out += lname;
    put16(out, 0x4246);
    put16(out, static_cast<std::uint32_t>(pad));
    out.append(pad, 'Z');
    out += m.data;
    if (m.descriptor) {
      put32(out, 0x08074b50);
      put32(out, crc);
      put32(out, static_cast<std::uint32_t>(m.data.size()));
      put32(out, static_cast<std::uint32_t>(m.data.size()));
    }
    // central header
    put32(cd, 0x02014b50);
    put16(cd, 20);
    put16(cd, 20);
    put16(cd, flags);
    put16(cd, m.method);
    put16(cd, 0);
    put16(cd, 0);
    put32(cd, crc);
    put32(cd, m.zip64 ? 0xffffffffu : static_cast<std::uint32_t>(m.data.size()));
    put32(cd, m.zip64 ? 0xffffffffu : static_cast<std::uint32_t>(m.data.size()));
    put16(cd, static_cast<std::uint32_t>(m.name.size()));
    put16(cd, m.zip64 ? 4 + 24 : 0);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put32(cd, 0);
    put32(cd, m.zip64 ? 0xffffffffu : static_cast<std::uint32_t>(offset));
    cd += m.name;
    if (m.zip64) {
      put16(cd, 0x0001);
      put16(cd, 24);
      put64(cd, m.data.size());
      put64(cd, m.data.size());
      put64(cd, offset);
    }
  }
  const std::uint64_t cd_offset = out.size();
  out += cd;
  if (o.zip64_end) {
    const std::uint64_t z_at = out.size();
    put32(out, 0x06064b50);
    put64(out, 44);
    put16(out, 45);
    put16(out, 45);
    put32(out, 0);
    put32(out, 0);
    put64(out, members.size());
    put64(out, members.size());
    put64(out, cd.size());
    put64(out, cd_offset);
    put32(out, 0x07064b50);
    put32(out, 0);
    put64(out, z_at);
    put32(out, 1);
  }
  put32(out, 0x06054b50);
  put16(out, o.disk);
  put16(out, 0);
  put16(out, o.zip64_end ? 0xffff : static_cast<std::uint32_t>(members.size()));
  put16(out, o.zip64_end ? 0xffff : static_cast<std::uint32_t>(members.size()));
  put32(out, o.zip64_end ? 0xffffffffu : static_cast<std::uint32_t>(cd.size()));
  put32(out, o.zip64_end ? 0xffffffffu : static_cast<std::uint32_t>(cd_offset));
  put16(out, static_cast<std::uint32_t>(o.comment.size()));
  out += o.comment;
  return out;
}

ZipArchive parse(const std::string& bytes) {
  return ZipArchive::parse(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "t.zip");
}
std::string text_of(const ZipArchive& z, const std::string& name) {
  const ZipEntry* e = z.find(name);
  REQUIRE(e);
  const auto d = z.data(*e);
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

// ---------------------------------------------------------------------------------------------
// A pickle writer emitting the opcodes the way CPython's protocol-2 pickler does for torch.

struct Pickle {
  std::string s;
  Pickle& raw(const std::string& bytes) { return s += bytes, *this; }
  Pickle& op(unsigned char c) { return s += static_cast<char>(c), *this; }
  Pickle& proto(int v = 2) { return op(0x80).op(static_cast<unsigned char>(v)); }
  Pickle& str(const std::string& v) {
    op('X');
    put32(s, static_cast<std::uint32_t>(v.size()));
    return raw(v);
  }
  Pickle& integer(std::int64_t v) {
    if (v >= 0 && v < 256) return op('K').op(static_cast<unsigned char>(v));
    if (v >= 0 && v < 65536) {
      op('M');
      put16(s, static_cast<std::uint32_t>(v));
      return *this;
    }
    if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      put32(s, static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
      return *this;
    }
    op(0x8a).op(8);
    put64(s, static_cast<std::uint64_t>(v));
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) { return op('c').raw(module + "\n" + name + "\n"); }
  Pickle& ordered_dict() { return global("collections", "OrderedDict").op(')').op('R'); }
  Pickle& int_tuple(const std::vector<std::int64_t>& v) {
    op('(');
    for (auto x : v) integer(x);
    return op('t');
  }
  // _rebuild_tensor_v2((persistent storage), offset, size, stride, False, OrderedDict())
  Pickle& tensor(const std::string& key, const std::string& type, std::int64_t numel, std::int64_t offset,
                 const std::vector<std::int64_t>& size, const std::vector<std::int64_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").op('(');
    op('(').str("storage").global("torch", type).str(key).str("cpu").integer(numel).op('t').op('Q');
    integer(offset).int_tuple(size).int_tuple(stride).op(0x89).ordered_dict().op('t');
    return op('R');
  }
};

struct TensorSpec {
  std::string name, key, type;
  std::int64_t numel, offset;
  std::vector<std::int64_t> size, stride;
};

std::string state_dict_pickle(const std::vector<TensorSpec>& ts) {
  Pickle p;
  p.proto().ordered_dict().op('(');
  for (const auto& t : ts) p.str(t.name).tensor(t.key, t.type, t.numel, t.offset, t.size, t.stride);
  return p.op('u').op('.').s;
}

PickledStateDict unpickle(const std::string& bytes, const PickleLimits& limits = {}) {
  return unpickle_state_dict({reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()}, "m.bin", limits);
}
std::string unpickle_error(const std::string& bytes, const PickleLimits& limits = {}) {
  return error_of([&] { unpickle(bytes, limits); });
}

template <class T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// A torch archive: prefix/data.pkl, prefix/data/<key> records, prefix/version.
std::string torch_zip(const std::string& pkl, const std::vector<std::pair<std::string, std::string>>& records,
                      const std::string& prefix = "archive/", std::vector<Member> extra = {}) {
  std::vector<Member> m = {{prefix + "data.pkl", pkl}};
  for (const auto& [key, data] : records) m.push_back({prefix + "data/" + key, data});
  m.push_back({prefix + "version", "3\n"});
  for (auto& e : extra) m.push_back(std::move(e));
  return make_zip(m);
}

TorchArchive read_archive(const std::string& bytes) {
  return read_torch_archive(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), "m.bin");
}
std::string archive_error(const std::string& bytes) {
  return error_of([&] { read_archive(bytes); });
}

}  // namespace

// =============================================================================================
// Zip

TEST_CASE("zip: stored entries are read in place, data descriptors and torch's padding accepted", "[torch]") {
  const std::string bytes = make_zip({{"a/data.pkl", "hello"}, {"a/data/0", std::string(100, 'x'), 0, 0, true}});
  const ZipArchive z = parse(bytes);
  REQUIRE(z.entries().size() == 2);
  CHECK_FALSE(z.zip64());
  CHECK(text_of(z, "a/data.pkl") == "hello");
  CHECK(text_of(z, "a/data/0") == std::string(100, 'x'));
  const ZipEntry* e = z.find("a/data/0");
  CHECK(e->data_offset % 64 == 0);  // torch's alignment survives: data are in place
  CHECK(z.data(*e).data() == reinterpret_cast<const unsigned char*>(bytes.data()) + e->data_offset);
  CHECK_NOTHROW(z.check_crc(*e));
  CHECK(z.find("a/missing") == nullptr);
  // a comment after the end record is fine when its length says so
  CHECK(parse(make_zip({{"x", "1"}}, {false, "a comment"})).entries().size() == 1);
}

TEST_CASE("zip: ZIP64 end record, locator and extra fields", "[torch]") {
  Member big{"archive/data/0", std::string(3000, 'q')};
  big.zip64 = true;
  Member small{"archive/data.pkl", "pk"};
  small.zip64 = true;
  // The archive views its bytes: they must outlive it (ASan found a temporary here).
  const std::string zip64_bytes = make_zip({small, big}, {true});
  const ZipArchive z = parse(zip64_bytes);
  CHECK(z.zip64());
  CHECK(text_of(z, "archive/data/0") == std::string(3000, 'q'));
  CHECK(text_of(z, "archive/data.pkl") == "pk");
  CHECK(z.find("archive/data/0")->size == 3000);

  // sizes saturated without the extra field
  std::string bytes = make_zip({small}, {true});
  const auto extra_at = bytes.find(std::string("\x01\x00\x18\x00", 4));
  REQUIRE(extra_at != std::string::npos);
  bytes[extra_at] = 0x09;  // the field is no longer the ZIP64 one
  CHECK_THAT(error_of([&] { parse(bytes); }), Contains("t.zip: zip archive: entry 'archive/data.pkl'") &&
                                                  Contains("no ZIP64 extra field"));
  // a locator pointing outside the archive
  bytes = make_zip({small}, {true});
  const auto loc = bytes.rfind(std::string("PK\x06\x07", 4));
  REQUIRE(loc != std::string::npos);
  for (int i = 0; i < 8; ++i) bytes[loc + 8 + i] = static_cast<char>(0x7f);
  CHECK_THAT(error_of([&] { parse(bytes); }), Contains("ZIP64 locator points at offset"));
  // a ZIP64 record that disagrees with an unsaturated classic field
  bytes = make_zip({small}, {true});
  const auto end = bytes.rfind(std::string("PK\x05\x06", 4));
  bytes[end + 10] = 5;
  bytes[end + 11] = 0;
  CHECK_THAT(error_of([&] { parse(bytes); }), Contains("says entry count 5 but the ZIP64 record says 1"));
}

TEST_CASE("zip: malformed archives are refused with the file and the problem", "[torch]") {
  const std::string good = make_zip({{"a/data.pkl", "hello"}, {"a/data/0", "0123456789"}});
  const auto err = [](const std::string& bytes) { return error_of([&] { parse(bytes); }); };
  CHECK_THAT(err("PK"), Contains("t.zip: zip archive: 2 bytes, too short"));
  CHECK_THAT(err(good.substr(0, good.size() - 5)), Contains("no end of central directory record"));
  CHECK_THAT(err(good + "trailing"), Contains("no end of central directory record"));
  CHECK_THAT(err(good.substr(100)), Contains("does not end where the end record begins"));

  std::string b = good;
  b[b.find(std::string("PK\x01\x02", 4))] = 'X';
  CHECK_THAT(err(b), Contains("central directory entry 0 at offset") && Contains("bad signature"));
  b = good;
  b[b.find(std::string("PK\x03\x04", 4), 10)] = 'X';
  CHECK_THAT(err(b), Contains("entry 'a/data/0': no local header at offset"));

  Member renamed{"a/data/0", "abc"};
  renamed.local_name = "a/data/1";
  CHECK_THAT(err(make_zip({renamed})), Contains("the local header at offset 0 names 'a/data/1'"));
  Member badcrc{"a/x", "abc"};
  badcrc.crc_delta = 1;
  const std::string crc_zip = make_zip({badcrc});
  const ZipArchive z = parse(crc_zip);  // the header CRCs agree with each other...
  CHECK_THAT(error_of([&] { z.check_crc(*z.find("a/x")); }), Contains("entry 'a/x' fails its CRC-32 check"));

  // local header disagreeing with the central directory (sizes)
  b = good;
  const auto lh2 = b.find(std::string("PK\x03\x04", 4), 10);
  b[lh2 + 22] = 11;  // uncompressed size 10 -> 11
  CHECK_THAT(err(b), Contains("local header (CRC") && Contains("disagrees with the central directory"));

  CHECK_THAT(err(make_zip({{"a", "1"}, {"a", "2"}})), Contains("entry 'a': appears twice in the central directory"));
  Member enc{"secret", "x", 0, 0x0001};
  CHECK_THAT(err(make_zip({enc})), Contains("entry 'secret': is encrypted"));
  CHECK_THAT(err(make_zip({{"x", "1"}}, {false, "", 1})), Contains("multi-disk"));

  // data running into the central directory (a truncated member)
  b = good;
  const auto cd0 = b.find(std::string("PK\x01\x02", 4));
  const auto cd1 = b.find(std::string("PK\x01\x02", 4), cd0 + 4);
  const auto lh_1 = b.find(std::string("PK\x03\x04", 4), 10);
  for (auto at : {cd1 + 20, cd1 + 24, lh_1 + 18, lh_1 + 22}) {
    b[at] = 0x00;
    b[at + 1] = 0x10;  // 4096 bytes
  }
  CHECK_THAT(err(b), Contains("entry 'a/data/0': its 4096 bytes of data") && Contains("run past the data area"));

  // two central entries pointing at one local header
  b = good;
  const auto off1 = cd1 + 42;
  for (int i = 0; i < 4; ++i) b[off1 + i] = 0;
  const auto name1 = cd1 + 46;
  b.replace(name1, 8, "a/data.p");  // same length as "a/data/0"; local header names a/data.pkl...
  CHECK_THAT(err(b), Contains("entry 'a/data.p': the local header at offset 0 names 'a/data.pkl'"));

  // overlap: an entry whose local header sits inside another's data
  std::string inner = make_zip({{"in", "INNER"}});
  inner.resize(inner.find(std::string("PK\x01\x02", 4)));  // its local header + data
  Member outer{"out", inner};
  std::string ov = make_zip({outer});
  // point a second central entry at the inner local header (offset of "out"'s data)
  const ZipArchive zo = parse(ov);
  const std::uint64_t inner_at = zo.find("out")->data_offset;
  std::string cd_extra;
  put32(cd_extra, 0x02014b50);
  put16(cd_extra, 20);
  put16(cd_extra, 20);
  put16(cd_extra, 0);
  put16(cd_extra, 0);
  put32(cd_extra, 0);
  put32(cd_extra, crc32(reinterpret_cast<const unsigned char*>("INNER"), 5));
  put32(cd_extra, 5);
  put32(cd_extra, 5);
  put16(cd_extra, 2);
  put16(cd_extra, 0);
  put16(cd_extra, 0);
  put16(cd_extra, 0);
  put16(cd_extra, 0);
  put32(cd_extra, 0);
  put32(cd_extra, static_cast<std::uint32_t>(inner_at));
  cd_extra += "in";
  const auto cd_at = ov.find(std::string("PK\x01\x02", 4));
  const auto end_at = ov.rfind(std::string("PK\x05\x06", 4));
  std::string cd_part = ov.substr(cd_at, end_at - cd_at) + cd_extra;
  std::string rebuilt = ov.substr(0, cd_at) + cd_part;
  put32(rebuilt, 0x06054b50);
  put16(rebuilt, 0);
  put16(rebuilt, 0);
  put16(rebuilt, 2);
  put16(rebuilt, 2);
  put32(rebuilt, static_cast<std::uint32_t>(cd_part.size()));
  put32(rebuilt, static_cast<std::uint32_t>(cd_at));
  put16(rebuilt, 0);
  CHECK_THAT(err(rebuilt), Contains("entries 'out' and 'in' overlap"));

  Member deflated{"a/data.pkl", "xx", 8};
  const std::string deflated_bytes = make_zip({deflated});
  const ZipArchive zd = parse(deflated_bytes);
  CHECK_THAT(error_of([&] { zd.data(*zd.find("a/data.pkl")); }),
             Contains("entry 'a/data.pkl' is compressed (deflate)") && Contains("only stored (uncompressed)"));
}

// =============================================================================================
// Unpickler

TEST_CASE("unpickler: a torch-style state dict with shared storages, parameters and metadata", "[torch]") {
  Pickle p;
  p.proto().ordered_dict().op('q').op(1).op('(');
  // a: FloatStorage '0' (12 elements), rows 0..1 of a 2x3 view at offset 0
  p.str("a").tensor("0", "FloatStorage", 12, 0, {2, 3}, {3, 1});
  // b: a Parameter wrapping a transposed view of the same storage, at offset 6
  p.str("b").global("torch._utils", "_rebuild_parameter").op('(');
  p.tensor("0", "FloatStorage", 12, 6, {3, 2}, {1, 3}).op(0x88).ordered_dict().op('t').op('R');
  // c: a 0-d HalfStorage tensor
  p.str("c").tensor("1", "HalfStorage", 1, 0, {}, {});
  p.op('u');
  // the `_metadata` attribute, set with BUILD (values of several kinds)
  p.op('}').str("_metadata").ordered_dict().op('(').str("").op('}').str("version").integer(1).op('s');
  p.str("f").op('G').raw(std::string("\x3f\xf0\x00\x00\x00\x00\x00\x00", 8)).op('N').op(0x89).op(0x87).op('u');
  p.op('s').op('b').op('.');
  const PickledStateDict sd = unpickle(p.s);
  REQUIRE(sd.storages.size() == 2);
  CHECK(sd.storages[0].key == "0");
  CHECK(std::string(sd.storages[0].type->name) == "FloatStorage");
  CHECK(sd.storages[0].numel == 12);
  CHECK(sd.storages[0].location == "cpu");
  CHECK(std::string(sd.storages[1].type->dtype_name) == "F16");
  REQUIRE(sd.tensors.size() == 3);
  CHECK(sd.tensors[0].name == "a");
  CHECK(sd.tensors[0].size == std::vector<std::int64_t>{2, 3});
  CHECK(sd.tensors[1].name == "b");
  CHECK(sd.tensors[1].storage == 0);
  CHECK(sd.tensors[1].storage_offset == 6);
  CHECK(sd.tensors[1].stride == std::vector<std::int64_t>{1, 3});
  CHECK(sd.tensors[2].size.empty());
  CHECK(sd.tensors[2].storage == 1);
}

TEST_CASE("unpickler: protocol 4 opcodes, memo and integers of every width", "[torch]") {
  // `meta` is the optional 7th argument of _rebuild_tensor_v2 (torch >= 2 adds it when non-empty)
  const auto build = [](const std::string& meta) {
    Pickle p;
    p.proto(4).op(0x95).raw(std::string(8, '\0'));  // FRAME
    // STACK_GLOBAL from SHORT_BINUNICODE module/name, each MEMOIZEd; the class is memo entry 2
    p.op(0x8c).op(11).raw("collections").op(0x94).op(0x8c).op(11).raw("OrderedDict").op(0x94).op(0x93).op(0x94);
    p.op(')').op('R').op(0x94);
    p.op(0x8d);
    put64(p.s, 1);
    p.raw("w");  // BINUNICODE8 key
    p.global("torch._utils", "_rebuild_tensor_v2").op('(');
    p.op('(').str("storage").global("torch", "BFloat16Storage").str("k9").str("cuda:0");
    p.op(0x8a).op(2).raw(std::string("\x00\x01", 2)).op('t').op('Q');  // numel: LONG1 256
    p.op('J');
    put32(p.s, 200);                                                   // storage_offset: BININT
    p.op('(').op('M').raw(std::string("\x38\x00", 2)).op('t');         // size (56,): BININT2
    p.op('K').op(1).op(0x85);                                          // stride (1,): TUPLE1
    p.op(0x89).op('h').op(2).op(')').op('R');                          // OrderedDict() via BINGET
    p.raw(meta).op('t').op('R');
    p.op('s').op('.');
    return p.s;
  };
  CHECK_THAT(unpickle_error(build("]")), Contains("metadata is a list, not a dict"));
  // a dict of metadata, holding a negative LONG1 and a list built with APPENDS
  const std::string meta =
      Pickle().op('}').str("m").op(0x8a).op(1).op(0xff).op('s').str("l").op(']').op('(').op('N').op('N').op('e').op('s').s;
  const PickledStateDict sd = unpickle(build(meta));
  REQUIRE(sd.tensors.size() == 1);
  CHECK(sd.tensors[0].name == "w");
  CHECK(sd.tensors[0].storage_offset == 200);
  CHECK(sd.tensors[0].size == std::vector<std::int64_t>{56});
  CHECK(sd.tensors[0].stride == std::vector<std::int64_t>{1});
  REQUIRE(sd.storages.size() == 1);
  CHECK(sd.storages[0].numel == 256);
  CHECK(sd.storages[0].key == "k9");
  CHECK(sd.storages[0].location == "cuda:0");
  CHECK(std::string(sd.storages[0].type->dtype_name) == "BF16");
  // a negative BININT storage_offset is refused
  std::string neg = build(meta);
  const auto j = neg.find(std::string("J\xc8\x00\x00\x00", 5));
  REQUIRE(j != std::string::npos);
  neg.replace(j, 5, std::string("J\xff\xff\xff\xff", 5));
  CHECK_THAT(unpickle_error(neg), Contains("storage_offset must be an integer >= 0, got an int -1"));
}

TEST_CASE("unpickler: globals outside the state-dict set are refused by name", "[torch]") {
  const auto call = [](const std::string& module, const std::string& name) {
    return Pickle().proto().global(module, name).op('(').str("echo pwned").op('t').op('R').op('.').s;
  };
  for (const auto& [module, name] : std::vector<std::pair<std::string, std::string>>{
           {"os", "system"},
           {"posix", "system"},
           {"subprocess", "Popen"},
           {"builtins", "eval"},
           {"builtins", "__import__"},
           {"functools", "partial"},
           {"torch", "_rebuild_tensor_v2"},
           {"torch._utils.evil", "_rebuild_tensor_v2"},
           {"torch", "QInt8Storage"},
           {"torch", "load"},
           {"torch._utils", "_rebuild_qtensor"},
       }) {
    CHECK_THAT(unpickle_error(call(module, name)),
               Contains("m.bin: data.pkl: refusing global '" + module + "." + name + "'") &&
                   Contains("runs no other code"));
  }
  // STACK_GLOBAL goes through the same check
  const std::string sg = Pickle().proto(4).op(0x8c).op(8).raw("builtins").op(0x8c).op(4).raw("exec").op(0x93).op('.').s;
  CHECK_THAT(unpickle_error(sg), Contains("refusing global 'builtins.exec' (STACK_GLOBAL at byte"));
}

TEST_CASE("unpickler: opcodes a state dict does not use are refused", "[torch]") {
  CHECK_THAT(unpickle_error(Pickle().proto().op('i').raw("os\nsystem\n").s),
             Contains("opcode INST (0x69) at byte 2 is not one a torch state dict uses"));
  CHECK_THAT(unpickle_error(Pickle().proto().ordered_dict().op(')').op(0x81).s), Contains("opcode NEWOBJ"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('C').op(1).raw("x").s), Contains("opcode SHORT_BINBYTES"));
  CHECK_THAT(unpickle_error(Pickle().proto().op(0xff).s), Contains("byte 0xff at offset 2 is not a pickle opcode"));
  CHECK_THAT(unpickle_error(Pickle().proto(6).s), Contains("pickle protocol 6"));
}

TEST_CASE("unpickler: malformed streams and wrong calls", "[torch]") {
  const auto sd = [](const std::string& body) { return Pickle().proto().ordered_dict().op('(').raw(body).op('u').op('.').s; };
  CHECK_THAT(unpickle_error(""), Contains("ends without a STOP opcode"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('X').raw(std::string("\x10\x00\x00\x00" "ab", 6)).s),
             Contains("ends inside BINUNICODE at byte 2"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('t').s), Contains("TUPLE at byte 2 without a preceding MARK"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('R').s), Contains("stack underflow at REDUCE"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('(').op(0x86).s), Contains("stack underflow at TUPLE2"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('h').op(7).s), Contains("reads memo entry 7, which was never stored"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('N').op('N').op('.').s), Contains("leaves 2 values on the stack"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('(').op('}').op('.').s), Contains("MARK(s) still open"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('}').op('.').raw("junk").s), Contains("4 bytes follow the STOP"));
  CHECK_THAT(unpickle_error(Pickle().proto().op(']').op('.').s), Contains("the pickled object is a list, not a state dict"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('X').raw(std::string("\x02\x00\x00\x00\xc3\x28", 6)).s),
             Contains("not valid UTF-8"));
  CHECK_THAT(unpickle_error(Pickle().proto().op(0x8a).op(9).raw(std::string(9, '\1')).s),
             Contains("a 9-byte integer does not fit in 64 bits"));

  // values
  CHECK_THAT(unpickle_error(sd(Pickle().str("x").integer(3).s)),
             Contains("the value of 'x' is an int, not a tensor"));
  CHECK_THAT(unpickle_error(sd(Pickle().str("model").op('}').s)), Contains("training checkpoint"));
  CHECK_THAT(unpickle_error(sd(Pickle().integer(1).tensor("0", "FloatStorage", 1, 0, {1}, {1}).s)),
             Contains("has a key that is an int"));
  const std::string t = Pickle().tensor("0", "FloatStorage", 4, 0, {4}, {1}).s;
  CHECK_THAT(unpickle_error(sd(Pickle().str("w").raw(t).str("w").raw(t).s)), Contains("the key 'w' appears twice"));
  CHECK_THAT(unpickle_error(sd(Pickle().str("w").raw(t).str("v").tensor("0", "HalfStorage", 4, 0, {4}, {1}).s)),
             Contains("storage '0' is declared as 4 elements of torch.FloatStorage and") &&
                 Contains("as 4 of torch.HalfStorage"));
  CHECK_THAT(unpickle_error(sd(Pickle().str("w").raw(t).str("v").tensor("0", "FloatStorage", 5, 0, {4}, {1}).s)),
             Contains("declared as 4 elements"));

  // calls with the wrong arguments
  CHECK_THAT(unpickle_error(Pickle().proto().global("collections", "OrderedDict").op('(').integer(1).op('t').op('R').s),
             Contains("collections.OrderedDict called with 1 arguments"));
  CHECK_THAT(unpickle_error(Pickle().proto().global("torch", "FloatStorage").op(')').op('R').s),
             Contains("calls torch.FloatStorage directly"));
  CHECK_THAT(unpickle_error(Pickle().proto().global("torch._utils", "_rebuild_tensor_v2").op(')').op('R').s),
             Contains("_rebuild_tensor_v2 called with 0 arguments, expected 6 or 7"));
  CHECK_THAT(unpickle_error(Pickle().proto().integer(4).op(')').op('R').s), Contains("calls an int, not an accepted global"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('(').str("module").str("k").op('t').op('Q').s),
             Contains("persistent id at BINPERSID at byte") && Contains("is not a ('storage', type, key, location, numel)"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('(').str("storage").global("torch", "FloatStorage").str("../x")
                                .str("cpu").integer(1).op('t').op('Q').s),
             Contains("storage key '../x' is not a record name"));
  // backward hooks must be empty; negative sizes, mismatched ranks
  std::string hooks = Pickle().global("torch._utils", "_rebuild_tensor_v2").op('(').op('(').str("storage")
                          .global("torch", "FloatStorage").str("0").str("cpu").integer(1).op('t').op('Q')
                          .integer(0).int_tuple({1}).int_tuple({1}).op(0x89).op('}').integer(1).integer(2).op('s')
                          .op('t').op('R').s;
  CHECK_THAT(unpickle_error(sd(Pickle().str("w").raw(hooks).s)), Contains("backward_hooks must be an empty OrderedDict"));
  CHECK_THAT(unpickle_error(sd(Pickle().str("w").tensor("0", "FloatStorage", 4, 0, {-1}, {1}).s)),
             Contains("size must be an integer >= 0, got an int -1"));
  CHECK_THAT(unpickle_error(sd(Pickle().str("w").tensor("0", "FloatStorage", 4, 0, {2, 2}, {1}).s)),
             Contains("size has 2 dimensions but stride 1"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('}').op('N').op('s').s), Contains("stack underflow at SETITEM"));
  CHECK_THAT(unpickle_error(Pickle().proto().op(']').op('N').op('N').op('s').op('.').s),
             Contains("SETITEM at byte 5 stores into a list, not a dict"));
  CHECK_THAT(unpickle_error(Pickle().proto().op('N').op('N').op('b').op('.').s), Contains("BUILD at byte 4 sets the state of None"));
}

TEST_CASE("unpickler: limits on depth, marks, values, memo and strings", "[torch]") {
  // nested lists: ]]]]...aaaa
  std::string lists = Pickle().proto().s + std::string(100, ']') + std::string(99, 'a') + ".";
  CHECK_THAT(unpickle_error(lists), Contains("containers nested deeper than 64 levels"));
  std::string tuples = Pickle().proto().op(')').s + std::string(100, '\x85') + ".";
  CHECK_THAT(unpickle_error(tuples), Contains("containers nested deeper than 64 levels"));
  CHECK_THAT(unpickle_error(Pickle().proto().s + std::string(5000, '(')), Contains("more than 1024 MARKs open"));

  PickleLimits small;
  small.max_objects = 10;
  CHECK_THAT(unpickle_error(Pickle().proto().s + std::string(20, 'N'), small), Contains("builds more than 10 values"));
  small = {};
  small.max_stack = 5;
  CHECK_THAT(unpickle_error(Pickle().proto().s + std::string(6, 'N'), small), Contains("stack grows past 5 values"));
  small = {};
  small.max_memo = 3;
  std::string memo = Pickle().proto().op('N').s;
  for (int i = 0; i < 5; ++i) memo += std::string("q") + static_cast<char>(i);
  CHECK_THAT(unpickle_error(memo, small), Contains("memo grows past 3 entries"));
  small = {};
  small.max_string = 4;
  CHECK_THAT(unpickle_error(Pickle().proto().str("hello").s, small), Contains("string of 5 bytes") && Contains("4-byte limit"));
  std::string huge = Pickle().proto().op(0x8d).s;
  put64(huge, 1ull << 62);
  CHECK_THAT(unpickle_error(huge), Contains("string of 4611686018427387904 bytes"));
  small = {};
  small.max_string_total = 8;
  CHECK_THAT(unpickle_error(Pickle().proto().str("abcde").str("fghij").s, small), Contains("strings exceed 8 bytes in all"));
  small = {};
  small.max_rank = 2;
  CHECK_THAT(unpickle_error(Pickle().proto().ordered_dict().str("w").tensor("0", "FloatStorage", 1, 0, {1, 1, 1}, {1, 1, 1}).s, small),
             Contains("size has 3 dimensions, more than the 2 accepted"));
}

// =============================================================================================
// Torch archives

TEST_CASE("torch archive: tensors are validated against their storages", "[torch]") {
  const std::string f32x6 = bytes_of(std::vector<float>{0, 1, 2, 3, 4, 5});
  const auto one = [&](const TensorSpec& t, const std::string& record) {
    return torch_zip(state_dict_pickle({t}), {{t.key, record}});
  };
  const TorchArchive ok = read_archive(one({"w", "0", "FloatStorage", 6, 1, {2, 2}, {3, 1}}, f32x6));
  REQUIRE(ok.tensors.size() == 1);
  CHECK(ok.prefix == "archive/");
  CHECK_FALSE(ok.layouts[0].contiguous);
  CHECK(ok.tensors[0].nbytes == 5 * 4);  // elements 1..5

  CHECK_THAT(archive_error(one({"w", "0", "FloatStorage", 6, 7, {0}, {1}}, f32x6)),
             Contains("m.bin: tensor 'w': storage_offset 7 lies past the end of storage '0' (6 elements)"));
  CHECK_THAT(archive_error(one({"w", "0", "FloatStorage", 6, 2, {2, 2}, {3, 1}}, f32x6)),
             Contains("tensor 'w': size [2, 2], stride [3, 1] and storage_offset 2 reach element 6 of storage '0', "
                      "which holds 6 elements"));
  CHECK_THAT(archive_error(one({"w", "0", "FloatStorage", 6, 0, {6}, {1ll << 62}}, f32x6)),
             Contains("reach past 2^64 elements"));
  CHECK_THAT(archive_error(one({"w", "0", "FloatStorage", 6, 0, {1ll << 32, 1ll << 32, 1ll << 32}, {0, 0, 0}}, f32x6)),
             Contains("tensor 'w': size [4294967296, 4294967296, 4294967296] overflows"));
  CHECK_THAT(archive_error(one({"w", "0", "FloatStorage", 6, 0, {1ll << 62}, {0}}, f32x6)), Contains("overflows"));
  CHECK_THAT(archive_error(one({"w", "0", "FloatStorage", 7, 0, {6}, {1}}, f32x6)),
             Contains("storage record 'archive/data/0' holds 24 bytes, but the pickle declares 7 elements of "
                      "torch.FloatStorage (4 bytes each)"));
  CHECK_THAT(archive_error(torch_zip(state_dict_pickle({{"w", "3", "FloatStorage", 6, 0, {6}, {1}}}), {{"0", f32x6}})),
             Contains("storage record 'archive/data/3' (the storage of tensor 'w') is missing from the archive"));
  // an empty tensor at the very end of its storage is fine; stride 0 (expand) too
  CHECK_NOTHROW(read_archive(one({"w", "0", "FloatStorage", 6, 6, {0, 3}, {3, 1}}, f32x6)));
  CHECK_NOTHROW(read_archive(one({"w", "0", "FloatStorage", 6, 5, {4, 4}, {0, 0}}, f32x6)));
}

TEST_CASE("torch archive: what the file is when it is not a torch.save zip", "[torch]") {
  const std::string pkl = state_dict_pickle({{"w", "0", "FloatStorage", 1, 0, {1}, {1}}});
  const std::string f1 = bytes_of(std::vector<float>{1});
  CHECK_THAT(archive_error(""), Contains("m.bin: the file is empty (0 bytes)"));
  std::string st = std::string("\x10\0\0\0\0\0\0\0", 8) + "{\"__metadata__\":{}}";
  CHECK_THAT(archive_error(st), Contains("m.bin: this is a safetensors file, not a torch.save archive") &&
                                    Contains("rename it to model.safetensors"));
  const std::string legacy = std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.", 15);
  CHECK_THAT(archive_error(legacy), Contains("a legacy torch.save file") && Contains("torch.save(torch.load(path"));
  std::string tar(600, '\0');
  tar.replace(257, 5, "ustar");
  tar[0] = 'x';
  CHECK_THAT(archive_error(tar), Contains("a tar archive"));
  CHECK_THAT(archive_error(pkl), Contains("a bare pickle"));
  CHECK_THAT(archive_error("hello world"), Contains("not a torch.save zip archive (it starts with bytes 68 65 6c 6c"));
  CHECK_THAT(archive_error(make_zip({{"a/x", "1"}})), Contains("a zip archive without a <folder>/data.pkl record"));
  CHECK_THAT(archive_error(make_zip({{"a/data.pkl", pkl}, {"b/data.pkl", pkl}})), Contains("holds two pickles"));
  CHECK_THAT(archive_error(torch_zip(pkl, {{"0", f1}}, "m/", {{"m/constants.pkl", "x"}})),
             Contains("a TorchScript archive"));
  CHECK_THAT(archive_error(torch_zip(pkl, {{"0", f1}}, "archive/", {{"archive/byteorder", "big"}})),
             Contains("the byteorder record says 'big'") && Contains("little-endian archives only"));
  CHECK_THAT(archive_error(torch_zip(pkl, {{"0", f1}}, "archive/", {{"archive/byteorder", "middle"}})),
             Contains("the byteorder record holds 'middle'"));
  // the records newer torch versions add are tolerated
  const TorchArchive a = read_archive(torch_zip(pkl, {{"0", f1}}, "pytorch_model/",
                                                {{"pytorch_model/byteorder", "little"},
                                                 {"pytorch_model/.data/serialization_id", "1234"},
                                                 {"pytorch_model/.format_version", "1"}}));
  CHECK(a.prefix == "pytorch_model/");
  CHECK(a.tensors.at(0).name == "w");
  // data.pkl is CRC-checked; a compressed record is refused when read
  Member bad{"archive/data.pkl", pkl};
  bad.crc_delta = 1;
  CHECK_THAT(archive_error(make_zip({bad, {"archive/data/0", f1}})), Contains("'archive/data.pkl' fails its CRC-32 check"));
  // no CRC recorded (0): not checked, as torch.load does not
  Member unrecorded{"archive/data.pkl", pkl};
  unrecorded.crc_delta = -static_cast<std::int64_t>(crc32(reinterpret_cast<const unsigned char*>(pkl.data()), pkl.size()));
  CHECK(read_archive(make_zip({unrecorded, {"archive/data/0", f1}})).tensors.size() == 1);
  Member deflated{"archive/data/0", f1, 8};
  CHECK_THAT(archive_error(make_zip({{"archive/data.pkl", pkl}, deflated})),
             Contains("entry 'archive/data/0' is compressed (deflate)"));
}

TEST_CASE("torch checkpoint file: strided views, half types, shared storages, eviction and release", "[torch]") {
  test::TempDir dir("torchckpt");
  // storage 0: 24 floats 0..23; storage 1: 4 halves; storage 2: 3 bfloat16; storage 3: I64
  std::vector<float> s0(24);
  for (int i = 0; i < 24; ++i) s0[i] = static_cast<float>(i);
  const std::vector<std::uint16_t> s1 = {0x3C00, 0xC000, 0x3555, 0x0001};  // 1, -2, 0.33325, 2^-24
  const std::vector<std::uint16_t> s2 = {0x3F80, 0x4049, 0xC000};            // 1, 3.140625, -2
  const std::vector<std::int64_t> s3 = {7, 8};
  const std::string pkl = state_dict_pickle({
      {"rows", "0", "FloatStorage", 24, 4, {2, 3}, {3, 1}},             // contiguous at an offset
      {"perm", "0", "FloatStorage", 24, 0, {3, 4, 2}, {1, 3, 12}},      // a permuted (2,4,3) block
      {"col", "0", "FloatStorage", 24, 2, {4}, {6}},                    // one column
      {"half", "1", "HalfStorage", 4, 0, {2, 2}, {1, 2}},               // transposed halves
      {"bf", "2", "BFloat16Storage", 3, 0, {3}, {1}},
      {"scalar", "0", "FloatStorage", 24, 23, {}, {}},
      {"empty", "0", "FloatStorage", 24, 0, {0, 5}, {5, 1}},
      {"ids", "3", "LongStorage", 2, 0, {1, 2}, {2, 1}},
  });
  const std::string zip = torch_zip(pkl, {{"0", bytes_of(s0)}, {"1", bytes_of(s1)}, {"2", bytes_of(s2)}, {"3", bytes_of(s3)}});
  const fs::path path = dir.write("pytorch_model.bin", zip);
  TorchCheckpointFile f = TorchCheckpointFile::open(path);
  CHECK(f.archive_prefix() == "archive/");
  CHECK(f.file_size() == zip.size());
  const auto values = [&](const std::string& name) {
    const TensorInfo& t = f.get(name);
    std::vector<float> out(static_cast<std::size_t>(t.numel()));
    f.read_f32(t, out.data());
    return out;
  };
  CHECK(f.contiguous(f.get("rows")));
  CHECK(values("rows") == std::vector<float>{4, 5, 6, 7, 8, 9});
  CHECK_FALSE(f.contiguous(f.get("perm")));
  std::vector<float> want;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 2; ++k) want.push_back(static_cast<float>(i + 3 * j + 12 * k));
  CHECK(values("perm") == want);
  CHECK(values("col") == std::vector<float>{2, 8, 14, 20});
  CHECK(values("half") == std::vector<float>{1.0f, 0.333251953125f, -2.0f, std::ldexp(1.0f, -24)});
  CHECK(f.get("half").dtype == DType::F16);
  CHECK(values("bf") == std::vector<float>{1.0f, 3.140625f, -2.0f});
  CHECK(values("scalar") == std::vector<float>{23});
  CHECK(values("empty").empty());
  // rows, perm, col, scalar, empty share one storage: one mapping, no copy
  CHECK(f.get("rows").data == static_cast<const unsigned char*>(f.get("perm").data) + 16);

  const TensorInfo* ids = f.find("ids");
  REQUIRE(ids);
  CHECK_FALSE(ids->supported);
  CHECK(ids->dtype_name == "I64");
  CHECK_THAT(error_of([&] { f.get("ids"); }), Contains("tensor 'ids' has dtype I64, which xcaption cannot compute with"));
  CHECK_THAT(error_of([&] { f.get("nope"); }), Contains("tensor 'nope' is missing"));

  // eviction drops pages but keeps the mapping: values read again the same
  f.evict(f.get("perm"));
  CHECK(values("perm") == want);
  f.release();
  CHECK(f.released());
  CHECK(f.get("rows").data == nullptr);
  CHECK_THAT(error_of([&] { values("rows"); }), Contains("read after the file was released"));
}

TEST_CASE("weight store: a pytorch_model.bin folder, validated and loaded like safetensors", "[torch]") {
  test::TempDir dir("torchstore");
  const std::vector<float> s0 = {1, 2, 3, 4, 5, 6};
  const std::string pkl = state_dict_pickle({{"w", "0", "FloatStorage", 6, 0, {3, 2}, {1, 3}},
                                             {"b", "0", "FloatStorage", 6, 3, {3}, {1}},
                                             {"mask", "1", "BoolStorage", 4, 0, {2, 2}, {2, 1}}});
  dir.write("pytorch_model.bin", torch_zip(pkl, {{"0", bytes_of(s0)}, {"1", std::string("\1\0\1\1", 4)}}));
  const WeightStore store = WeightStore::open(dir.path);
  CHECK(store.format() == "pytorch (zip)");
  CHECK(store.description() == "pytorch_model.bin");
  CHECK(store.main_dtype() == DType::F32);
  CHECK_NOTHROW(store.validate({{"w", {3, 2}}, {"b", {3}}, {"lm_head", {2}, false}}));
  CHECK_THAT(error_of([&] { store.validate({{"mask", {2, 2}}}); }),
             Contains("pytorch_model.bin: tensor 'mask': dtype BOOL is not supported"));
  const FloatBuffer w = store.load("w");
  CHECK(std::vector<float>(w.data(), w.data() + w.size()) == std::vector<float>{1, 4, 2, 5, 3, 6});
  const FloatBuffer b = store.load("b");
  CHECK(std::vector<float>(b.data(), b.data() + b.size()) == std::vector<float>{4, 5, 6});
  CHECK(store.total_parameters({{"w", {3, 2}}, {"b", {3}}}) == 9);
}
