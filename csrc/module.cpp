// The pybind11 module body of mxforge._C: the instance table, the manifest and one typed
// launch entry per argument struct. No torch: Python passes raw pointers and sizes.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "mxforge/args.h"
#include "mxforge/registry.h"

namespace py = pybind11;

namespace mxf {
int compiled_targets(const TargetRegistry** out, int cap);
const char* manifest_json();
}  // namespace mxf

namespace {

std::vector<const mxf::InstanceInfo*>& table() {
  static std::vector<const mxf::InstanceInfo*> rows = [] {
    std::vector<const mxf::InstanceInfo*> r;
    const mxf::TargetRegistry* regs[64];
    int n = mxf::compiled_targets(regs, 64);
    for (int t = 0; t < n && t < 64; ++t)
      for (int i = 0; i < regs[t]->count; ++i) r.push_back(&regs[t]->instances[i]);
    return r;
  }();
  return rows;
}

const mxf::TargetRegistry* find_target(const std::string& name) {
  const mxf::TargetRegistry* regs[64];
  int n = mxf::compiled_targets(regs, 64);
  for (int t = 0; t < n && t < 64; ++t)
    if (name == regs[t]->target) return regs[t];
  return nullptr;
}

// Runs instance `index` on `args`; `dependent_launch` allows programmatic dependent launch
// for the kernels it launches (registry.h; Python decides it per op).
template <class Args>
void launch(int64_t index, const Args& args, bool dependent_launch, const char* args_type) {
  auto& rows = table();
  if (index < 0 || index >= int64_t(rows.size()))
    throw std::out_of_range("instance index " + std::to_string(index) + " out of range [0, " +
                            std::to_string(rows.size()) + ")");
  const mxf::InstanceInfo* info = rows[size_t(index)];
  if (std::string(info->args_type) != args_type)
    throw std::invalid_argument(std::string("instance ") + info->name + " takes " +
                                info->args_type + ", got " + args_type);
  mxf::Status st;
  {
    py::gil_scoped_release release;
    bool& allowed = mxf::dependent_launch_allowed();
    allowed = dependent_launch;
    st = info->launch(&args);
    allowed = false;
  }
  if (st.code != 0) throw std::runtime_error(std::string(info->name) + ": " + st.message);
}

// _C.launch(index, args, dependent_launch=False): the overload for one argument struct.
template <class Args>
void def_launch(py::module_& m, const char* args_type) {
  m.def(
      "launch",
      [args_type](int64_t i, const Args& a, bool dependent_launch) {
        launch(i, a, dependent_launch, args_type);
      },
      py::arg("index"), py::arg("args"), py::arg("dependent_launch") = false);
}

// Pointer fields travel as Python ints (tensor.data_ptr()).
template <class C, class P>
void ptr_field(py::class_<C>& cls, const char* name, P C::*member) {
  cls.def_property(
      name, [member](const C& c) { return int64_t(reinterpret_cast<uintptr_t>(c.*member)); },
      [member](C& c, int64_t v) { c.*member = reinterpret_cast<P>(uintptr_t(v)); });
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mxforge compiled instances (generated; see mxforge.instances())";

  m.def("instances", [] {
    py::list out;
    for (const auto* r : table()) {
      py::dict d;
      d["name"] = r->name; d["target"] = r->target; d["op"] = r->op;
      d["args_type"] = r->args_type; d["a"] = r->a; d["b"] = r->b; d["out"] = r->out;
      d["block_m"] = r->block_m; d["block_n"] = r->block_n; d["block_k"] = r->block_k;
      d["split_k"] = r->split_k; d["activation"] = r->activation; d["gate_up"] = r->gate_up;
      d["routed_weight"] = r->routed_weight; d["bias"] = bool(r->bias); d["layout"] = r->layout;
      d["b_path"] = r->b_path; d["cluster_k"] = r->cluster_k;
      d["n_tiles"] = r->n_tiles;
      out.append(d);
    }
    return out;
  });
  m.def("manifest", [] { return std::string(mxf::manifest_json()); });
  m.def("availability", [](const std::string& target) -> py::object {
    const mxf::TargetRegistry* reg = find_target(target);
    if (reg == nullptr) return py::str("target " + target + " is not compiled into this module");
    const char* why = reg->availability();
    if (why == nullptr) return py::none();
    return py::str(why);
  });

  py::class_<mxf::QuantArgs> qa(m, "QuantArgs");
  qa.def(py::init<>())
      .def_readwrite("x_stride", &mxf::QuantArgs::x_stride)
      .def_readwrite("q_stride", &mxf::QuantArgs::q_stride)
      .def_readwrite("scale_stride", &mxf::QuantArgs::scale_stride)
      .def_readwrite("M", &mxf::QuantArgs::M)
      .def_readwrite("K", &mxf::QuantArgs::K)
      .def_readwrite("rounding", &mxf::QuantArgs::rounding)
      .def_readwrite("stream", &mxf::QuantArgs::stream);
  ptr_field(qa, "x", &mxf::QuantArgs::x);
  ptr_field(qa, "y", &mxf::QuantArgs::y);
  ptr_field(qa, "q", &mxf::QuantArgs::q);
  ptr_field(qa, "scales", &mxf::QuantArgs::scales);

  py::class_<mxf::PackArgs> pa(m, "PackArgs");
  pa.def(py::init<>())
      .def_readwrite("E", &mxf::PackArgs::E)
      .def_readwrite("N", &mxf::PackArgs::N)
      .def_readwrite("K", &mxf::PackArgs::K)
      .def_readwrite("direction", &mxf::PackArgs::direction)
      .def_readwrite("stream", &mxf::PackArgs::stream);
  ptr_field(pa, "src_w", &mxf::PackArgs::src_w);
  ptr_field(pa, "src_s", &mxf::PackArgs::src_s);
  ptr_field(pa, "dst_w", &mxf::PackArgs::dst_w);
  ptr_field(pa, "dst_s", &mxf::PackArgs::dst_s);

  py::class_<mxf::SortArgs> sa(m, "SortArgs");
  sa.def(py::init<>())
      .def_readwrite("zero_bytes", &mxf::SortArgs::zero_bytes)
      .def_readwrite("workspace_bytes", &mxf::SortArgs::workspace_bytes)
      .def_readwrite("T", &mxf::SortArgs::T)
      .def_readwrite("topk", &mxf::SortArgs::topk)
      .def_readwrite("E", &mxf::SortArgs::E)
      .def_readwrite("block_m", &mxf::SortArgs::block_m)
      .def_readwrite("stream", &mxf::SortArgs::stream);
  ptr_field(sa, "topk_ids", &mxf::SortArgs::topk_ids);
  ptr_field(sa, "topk_weights", &mxf::SortArgs::topk_weights);
  ptr_field(sa, "expert_mask", &mxf::SortArgs::expert_mask);
  ptr_field(sa, "sorted_ids", &mxf::SortArgs::sorted_ids);
  ptr_field(sa, "sorted_weights", &mxf::SortArgs::sorted_weights);
  ptr_field(sa, "sorted_expert_ids", &mxf::SortArgs::sorted_expert_ids);
  ptr_field(sa, "num_valid_ids", &mxf::SortArgs::num_valid_ids);
  ptr_field(sa, "zero_buf", &mxf::SortArgs::zero_buf);
  ptr_field(sa, "workspace", &mxf::SortArgs::workspace);

  py::class_<mxf::FusedQuantSortArgs>(m, "FusedQuantSortArgs")
      .def(py::init<>())
      .def_readwrite("quant", &mxf::FusedQuantSortArgs::quant)
      .def_readwrite("sort", &mxf::FusedQuantSortArgs::sort);

  py::class_<mxf::MoeGemmArgs> ga(m, "MoeGemmArgs");
  ga.def(py::init<>())
      .def_readwrite("a_stride", &mxf::MoeGemmArgs::a_stride)
      .def_readwrite("a_scale_stride", &mxf::MoeGemmArgs::a_scale_stride)
      .def_readwrite("out_stride", &mxf::MoeGemmArgs::out_stride)
      .def_readwrite("out_scale_stride", &mxf::MoeGemmArgs::out_scale_stride)
      .def_readwrite("workspace_bytes", &mxf::MoeGemmArgs::workspace_bytes)
      .def_readwrite("T", &mxf::MoeGemmArgs::T)
      .def_readwrite("topk", &mxf::MoeGemmArgs::topk)
      .def_readwrite("E", &mxf::MoeGemmArgs::E)
      .def_readwrite("N", &mxf::MoeGemmArgs::N)
      .def_readwrite("K", &mxf::MoeGemmArgs::K)
      .def_readwrite("N2", &mxf::MoeGemmArgs::N2)
      .def_readwrite("max_blocks", &mxf::MoeGemmArgs::max_blocks)
      .def_readwrite("rounding", &mxf::MoeGemmArgs::rounding)
      .def_readwrite("test_delay_ns", &mxf::MoeGemmArgs::test_delay_ns)
      .def_readwrite("slots_stride", &mxf::MoeGemmArgs::slots_stride)
      .def_readwrite("slots_accumulate", &mxf::MoeGemmArgs::slots_accumulate)
      .def_readwrite("direct_routes", &mxf::MoeGemmArgs::direct_routes)
      .def_readwrite("zero_bytes", &mxf::MoeGemmArgs::zero_bytes)
      .def_readwrite("stream", &mxf::MoeGemmArgs::stream);
  ptr_field(ga, "a", &mxf::MoeGemmArgs::a);
  ptr_field(ga, "a_scales", &mxf::MoeGemmArgs::a_scales);
  ptr_field(ga, "b", &mxf::MoeGemmArgs::b);
  ptr_field(ga, "b_scales", &mxf::MoeGemmArgs::b_scales);
  ptr_field(ga, "bias", &mxf::MoeGemmArgs::bias);
  ptr_field(ga, "b2", &mxf::MoeGemmArgs::b2);
  ptr_field(ga, "b2_scales", &mxf::MoeGemmArgs::b2_scales);
  ptr_field(ga, "bias2", &mxf::MoeGemmArgs::bias2);
  ptr_field(ga, "sorted_ids", &mxf::MoeGemmArgs::sorted_ids);
  ptr_field(ga, "sorted_weights", &mxf::MoeGemmArgs::sorted_weights);
  ptr_field(ga, "topk_weights", &mxf::MoeGemmArgs::topk_weights);
  ptr_field(ga, "zero_buf", &mxf::MoeGemmArgs::zero_buf);
  ptr_field(ga, "sorted_expert_ids", &mxf::MoeGemmArgs::sorted_expert_ids);
  ptr_field(ga, "num_valid_ids", &mxf::MoeGemmArgs::num_valid_ids);
  ptr_field(ga, "out", &mxf::MoeGemmArgs::out);
  ptr_field(ga, "out_scales", &mxf::MoeGemmArgs::out_scales);
  ptr_field(ga, "workspace", &mxf::MoeGemmArgs::workspace);
  ptr_field(ga, "slots", &mxf::MoeGemmArgs::slots);
  ptr_field(ga, "topk_ids", &mxf::MoeGemmArgs::topk_ids);
  ptr_field(ga, "expert_mask", &mxf::MoeGemmArgs::expert_mask);

  def_launch<mxf::QuantArgs>(m, "QuantArgs");
  def_launch<mxf::PackArgs>(m, "PackArgs");
  def_launch<mxf::SortArgs>(m, "SortArgs");
  def_launch<mxf::FusedQuantSortArgs>(m, "FusedQuantSortArgs");
  def_launch<mxf::MoeGemmArgs>(m, "MoeGemmArgs");
}
