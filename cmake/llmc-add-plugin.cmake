# llmc_add_plugin(<target> SOURCES <files...> [TORCH] [LIBRARIES <libs...>] [OUTPUT_DIRECTORY <dir>])
#
# Builds a modifier plugin the way the host expects it: a MODULE library named
# libllmc-<target>.so, hidden visibility, only `llmc_plugin_entry` exported (version script),
# no undefined symbols. TORCH links LibTorch for plugins that compute with at::Tensor.
function(llmc_add_plugin name)
  cmake_parse_arguments(ARG "TORCH" "OUTPUT_DIRECTORY" "SOURCES;LIBRARIES" ${ARGN})
  set(_LLMC_PLUGIN_MAP "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/llmc-plugin.map")
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "llmc_add_plugin(${name}): SOURCES is required")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES
    PREFIX "libllmc-"
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_link_libraries(${name} PRIVATE llmc::sdk ${ARG_LIBRARIES})
  if(ARG_TORCH)
    if(NOT TARGET torch)
      find_package(Torch REQUIRED)
    endif()
    target_link_libraries(${name} PRIVATE ${TORCH_LIBRARIES})
    # ATen's at::parallel_for is an inline OpenMP region (LibTorch is built with OpenMP): code
    # that calls it must be compiled with OpenMP too, or it silently runs on one thread.
    find_package(OpenMP COMPONENTS CXX)
    if(OpenMP_CXX_FOUND)
      target_link_libraries(${name} PRIVATE OpenMP::OpenMP_CXX)
    endif()
  endif()
  target_link_options(${name} PRIVATE "-Wl,--version-script=${_LLMC_PLUGIN_MAP}" "-Wl,--no-undefined")
  set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS "${_LLMC_PLUGIN_MAP}")
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()
