# tapegrad — a Debian package with CPack (included last by the root CMakeLists.txt):
#   cmake -S . -B build-deb -DTAPEGRAD_NATIVE=OFF -DCMAKE_INSTALL_PREFIX=/usr -DTAPEGRAD_BUILD_TESTS=OFF
#   cmake --build build-deb -j2
#   (cd build-deb && cpack -G DEB)          # -> build-deb/tapegrad_<version>_<arch>.deb
#   sudo apt-get install -y ./build-deb/tapegrad_*.deb
# The package holds what `cmake --install` installs (cmake/install.cmake): the headers, libtapegrad.a,
# the CMake package, tapegrad.pc, docs/ in share/doc/tapegrad, and the example programs as
# tapegrad-char-gru, tapegrad-gru-gates, ... (install rules at the end of examples/CMakeLists.txt).
# It must be built portable (TAPEGRAD_NATIVE=OFF): a package built with -march=native would crash
# with "illegal instruction" on a machine without this one's instruction set, so cpack refuses.
# Checked by tools/check_deb.sh; the recipe is in docs/install.md.
set(CPACK_PACKAGE_NAME tapegrad)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "tapegrad")
set(CPACK_PACKAGE_CONTACT "tapegrad maintainers <tapegrad@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "tape-based reverse-mode automatic differentiation for C++ (xtensor), with GRU examples")
set(CPACK_PACKAGE_DESCRIPTION
    "A small reverse-mode autodiff framework over xtensor: tensors, a gradient tape, ops, modules\n(Linear, GRU, LSTM cell, Embedding), optimizers, gradient checking and .npz checkpoints.\nInstalls headers, a static library, a CMake package (find_package(tapegrad)) and a pkg-config\nfile, the documentation and the example programs (tapegrad-char-gru, ...).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # tapegrad_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# What a consumer needs to compile and link against the headers and the static library (the -dev
# packages pull the shared libraries the example programs run with).
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libxtensor-dev, libxsimd-dev, libxtensor-blas-dev, libopenblas-dev, libfmt-dev, libzip-dev, pkg-config")
# The examples' plots (tapegrad-char-gru --plot ...) run gnuplot.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "gnuplot-nox")

# The refusal of a -march=native package, checked when cpack runs (not at configure time, so a
# native build tree still configures): a CPack pre-build script, whose FATAL_ERROR stops cpack
# before it writes the package (an error in CPACK_PROJECT_CONFIG_FILE would be ignored).
if(TAPEGRAD_NATIVE)
  set(TAPEGRAD_PACKAGE_NATIVE 1)
else()
  set(TAPEGRAD_PACKAGE_NATIVE 0)
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/package_check.cmake.in
               ${PROJECT_BINARY_DIR}/tapegrad_package_check.cmake @ONLY)
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_BINARY_DIR}/tapegrad_package_check.cmake)

include(CPack)
