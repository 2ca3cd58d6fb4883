// Runtime hooks of the cpu target: always available where the module imports.
namespace mxf {
const char* availability_cpu() { return nullptr; }
}  // namespace mxf
