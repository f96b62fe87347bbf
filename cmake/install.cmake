# Install rules (included by the top-level CMakeLists.txt after every layer is defined):
#   <prefix>/include/metatape/metatape.h       the C API
#   <prefix>/lib/libmetatape.so(.0, .0.1.0)    shared library, only mt_* exported
#   <prefix>/lib/libmetatape.a                 static library: the C API and every C++ layer it needs,
#                                              merged into one archive (link with -lstdc++ -lm -lz
#                                              -lpthread, or through the CMake package / pkg-config)
#   <prefix>/lib/cmake/metatape/               find_package(metatape): imported targets
#                                              metatape::metatape (shared) and metatape::metatape_static
#   <prefix>/lib/pkgconfig/metatape.pc         pkg-config (shared; --static adds the private libs)
#   <prefix>/bin/metatape                      the CLI, when it is built
if(NOT TARGET metatape_capi)
  return()
endif()
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# ---- the merged static archive ---------------------------------------------------------------------
set(_metatape_archive ${PROJECT_BINARY_DIR}/capi/libmetatape.a)
set(_metatape_mri "create ${_metatape_archive}\n")
set(_metatape_parts)
foreach(part metatape_capi_static metatape_meta metatape_dist metatape_nn metatape_tasks metatape_autograd metatape_kernels)
  if(TARGET ${part})
    get_target_property(_type ${part} TYPE)
    if(_type STREQUAL "STATIC_LIBRARY")
      string(APPEND _metatape_mri "addlib $<TARGET_FILE:${part}>\n")
      list(APPEND _metatape_parts ${part})
    endif()
  endif()
endforeach()
string(APPEND _metatape_mri "save\nend\n")
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/capi/libmetatape.mri CONTENT "${_metatape_mri}")
add_custom_command(OUTPUT ${_metatape_archive}
  COMMAND ${CMAKE_COMMAND} -E rm -f ${_metatape_archive}
  COMMAND ${CMAKE_COMMAND} -DAR=${CMAKE_AR} -DMRI=${PROJECT_BINARY_DIR}/capi/libmetatape.mri
          -P ${CMAKE_CURRENT_LIST_DIR}/merge_archives.cmake
  DEPENDS ${_metatape_parts} ${PROJECT_BINARY_DIR}/capi/libmetatape.mri
  COMMENT "Merging the static libraries into libmetatape.a" VERBATIM)
add_custom_target(metatape_capi_archive ALL DEPENDS ${_metatape_archive})

# ---- install rules ---------------------------------------------------------------------------------
install(TARGETS metatape_capi EXPORT metatapeTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${_metatape_archive} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/capi/metatape.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/metatape)
if(TARGET metatape)
  install(TARGETS metatape RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# The static archive holds the CUDA kernels when the backend is built: its users link the CUDA
# runtime, cuBLAS and cuDNN (the convolutions; by the path this build found, kernels/CMakeLists.txt) too.
if(METATAPE_WITH_CUDA)
  get_filename_component(_metatape_cudnn_dir ${METATAPE_CUDNN_LIBRARY} DIRECTORY)
  set(METATAPE_STATIC_CUDA_FIND "find_dependency(CUDAToolkit)")
  set(METATAPE_STATIC_CUDA_LIBS ";CUDA::cublas;CUDA::cudart;${METATAPE_CUDNN_LIBRARY}")
  set(METATAPE_PC_CUDA_LIBS " -L${CUDAToolkit_LIBRARY_DIR} -L${_metatape_cudnn_dir} -lcudnn -lcublas -lcudart -ldl -lrt")
else()
  set(METATAPE_STATIC_CUDA_FIND "")
  set(METATAPE_STATIC_CUDA_LIBS "")
  set(METATAPE_PC_CUDA_LIBS "")
endif()

set(METATAPE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/metatape)
install(EXPORT metatapeTargets NAMESPACE metatape:: DESTINATION ${METATAPE_CMAKE_DIR})
set(METATAPE_INSTALL_LIBDIR ${CMAKE_INSTALL_LIBDIR})
set(METATAPE_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/metatapeConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/metatapeConfig.cmake
  INSTALL_DESTINATION ${METATAPE_CMAKE_DIR}
  PATH_VARS METATAPE_INSTALL_LIBDIR METATAPE_INSTALL_INCLUDEDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/metatapeConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/metatapeConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/metatapeConfigVersion.cmake
        DESTINATION ${METATAPE_CMAKE_DIR})

file(RELATIVE_PATH METATAPE_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(${CMAKE_CURRENT_LIST_DIR}/metatape.pc.in ${PROJECT_BINARY_DIR}/cmake/metatape.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/cmake/metatape.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
