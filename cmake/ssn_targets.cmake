# Shared settings for every ssn target: warnings, LibTorch flags and one precompiled
# <torch/torch.h> that all targets reuse (the header alone costs ~20 s per translation unit).

set(SSN_WARNINGS -Wall -Wextra)

# The target that owns the precompiled header; everything else reuses it.
add_library(ssn_pch STATIC ${PROJECT_SOURCE_DIR}/cmake/pch_anchor.cpp)
target_link_libraries(ssn_pch PUBLIC ${TORCH_LIBRARIES})
target_compile_options(ssn_pch PUBLIC ${SSN_WARNINGS})
# ccache hashes gcc's preprocessed output; -fpch-preprocess keeps the precompiled header's
# #include in it (ccache's manual, "Precompiled headers"; the sloppiness is in CMakeLists.txt).
set(SSN_PCH_FLAGS "")
if(SSN_USE_PCH AND CCACHE_PROGRAM AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  set(SSN_PCH_FLAGS -fpch-preprocess)
endif()
if(SSN_USE_PCH)
  target_precompile_headers(ssn_pch PRIVATE <torch/torch.h>)
  target_compile_options(ssn_pch PRIVATE ${SSN_PCH_FLAGS})
endif()

# ssn_configure_target(<target>): the common flags, plus the shared precompiled header.
function(ssn_configure_target target)
  target_compile_options(${target} PRIVATE ${SSN_WARNINGS})
  if(SSN_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM ssn_pch)
    target_compile_options(${target} PRIVATE ${SSN_PCH_FLAGS})
  endif()
endfunction()
