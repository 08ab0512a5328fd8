# tapegrad — `cmake --install`: headers, the library and a CMake package, so that a project does
#   find_package(tapegrad 0.1 REQUIRED)
#   target_link_libraries(app PRIVATE tapegrad::tapegrad)
# (add_subdirectory users get the same name from the ALIAS in the root CMakeLists.txt.)
#
# Layout under the prefix:
#   include/tapegrad/framework/*.hpp, include/tapegrad/layers/*.hpp   #include "framework/tensor.hpp"
#   lib/libtapegrad.a
#   lib/cmake/tapegrad/tapegradConfig.cmake, tapegradConfigVersion.cmake, tapegradTargets*.cmake
#   lib/pkgconfig/tapegrad.pc                                          pkg-config --cflags --libs tapegrad
#   share/doc/tapegrad/ (docs/)
#   lib/libtapegrad_grading.a, lib/cmake/tapegrad/tapegrad_assignment.cmake   tapegrad::grading
#   share/tapegrad/fixtures/*.npz (tests/fixtures/: PyTorch reference values for graders)
#   bin/tapegrad-char-gru, ... when the examples are built (rules at the end of examples/CMakeLists.txt)
# ("lib" is CMAKE_INSTALL_LIBDIR: lib/x86_64-linux-gnu with -DCMAKE_INSTALL_PREFIX=/usr on Debian.)
# The config finds the dependencies again (cmake/tapegradConfig.cmake.in), including libzip,
# which a static library's consumers must link although it is PRIVATE here.
# Checked by tools/check_install.sh (installs, then builds tests/consumer against the prefix with
# find_package and with pkg-config) and tools/check_deb.sh (the Debian package: cmake/package.cmake).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(TAPEGRAD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/tapegrad)

install(TARGETS tapegrad EXPORT tapegradTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The grading library (tapegrad::grading, framework/grading/), its CMake function
# tapegrad_add_grader() and the PyTorch fixtures the assignments' graders read
# (share/tapegrad/fixtures = tapegrad_FIXTURE_DIR after find_package; docs/assignments.md).
install(TARGETS tapegrad_grading EXPORT tapegradTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/framework/grading/tapegrad_assignment.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tapegrad)
set(TAPEGRAD_FIXTURE_INSTALL_DIR ${CMAKE_INSTALL_DATADIR}/tapegrad/fixtures)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/tests/fixtures/ DESTINATION ${TAPEGRAD_FIXTURE_INSTALL_DIR}
  FILES_MATCHING PATTERN "*.npz" PATTERN "README.md")
# "include/tapegrad": the INSTALL_INTERFACE include directory of the target (root CMakeLists.txt).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/framework ${PROJECT_SOURCE_DIR}/layers
  DESTINATION include/tapegrad
  FILES_MATCHING PATTERN "*.hpp")
install(EXPORT tapegradTargets NAMESPACE tapegrad:: DESTINATION ${TAPEGRAD_CMAKE_DIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/tapegradConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tapegradConfig.cmake
  INSTALL_DESTINATION ${TAPEGRAD_CMAKE_DIR}
  PATH_VARS TAPEGRAD_FIXTURE_INSTALL_DIR)
# 0.x: minor versions may break the API, so only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tapegradConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tapegradConfig.cmake ${PROJECT_BINARY_DIR}/tapegradConfigVersion.cmake
  DESTINATION ${TAPEGRAD_CMAKE_DIR})

# pkg-config: <libdir>/pkgconfig/tapegrad.pc (cmake/tapegrad.pc.in), relocatable through
# ${pcfiledir}, for   g++ main.cpp $(pkg-config --cflags --libs tapegrad)
# No -march flag and no allocator define in it: framework/xtensor_config.hpp fixes xt::xarray's
# allocator in the headers (a function-like macro cannot be passed safely through make or a shell).
set(TAPEGRAD_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  # An absolute libdir: not relocatable, the prefix is the configured one.
  set(TAPEGRAD_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(TAPEGRAD_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH _tapegrad_up "/prefix/${TAPEGRAD_PC_DIR}" "/prefix")  # "../.." or deeper
  string(REGEX REPLACE "/$" "" _tapegrad_up "${_tapegrad_up}")
  set(TAPEGRAD_PC_PREFIX "\${pcfiledir}/${_tapegrad_up}")
  set(TAPEGRAD_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/tapegrad.pc.in ${PROJECT_BINARY_DIR}/tapegrad.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tapegrad.pc DESTINATION ${TAPEGRAD_PC_DIR})

# The documentation: docs/ -> share/doc/tapegrad.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR})
