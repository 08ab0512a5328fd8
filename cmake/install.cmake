# tapegrad — `cmake --install`: headers, the library and a CMake package, so that a project does
#   find_package(tapegrad 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE tapegrad::tapegrad)
# (add_subdirectory users get the same name from the ALIAS in the root CMakeLists.txt.)
#
# Layout under the prefix:
#   include/tapegrad/framework/*.hpp, include/tapegrad/layers/*.hpp   #include "framework/tensor.hpp"
#   lib/libtapegrad.a
#   lib/cmake/tapegrad/tapegradConfig.cmake, tapegradConfigVersion.cmake, tapegradTargets*.cmake
# The config finds the dependencies again (cmake/tapegradConfig.cmake.in), including libzip,
# which a static library's consumers must link although it is PRIVATE here.
# Checked by tools/check_install.sh (installs, then builds tests/consumer against the prefix).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TAPEGRAD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tapegrad)

install(TARGETS tapegrad EXPORT tapegradTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# "include/tapegrad": the INSTALL_INTERFACE include directory of the target (root CMakeLists.txt).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/framework ${PROJECT_SOURCE_DIR}/layers
  DESTINATION include/tapegrad
  FILES_MATCHING PATTERN "*.hpp")
install(EXPORT tapegradTargets NAMESPACE tapegrad:: DESTINATION ${TAPEGRAD_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/tapegradConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tapegradConfig.cmake
  INSTALL_DESTINATION ${TAPEGRAD_CMAKE_DIR})
# 0.x: minor versions may break the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tapegradConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tapegradConfig.cmake ${PROJECT_BINARY_DIR}/tapegradConfigVersion.cmake
  DESTINATION ${TAPEGRAD_CMAKE_DIR})
