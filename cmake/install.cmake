# `cmake --install build --prefix P` lays out:
#   P/bin/artflow                     the command (kernels are embedded in it)
#   P/include/artflow/*.h             the public plugin SDK (stage.h, status.h)
#   P/lib/pkgconfig/artflow.pc        Cflags only: plugins link nothing (see below)
#   P/share/artflow/profiles/**       device profiles         (config/profiles)
#   P/share/artflow/models/*.yaml     architecture files      (config/models)
#   P/share/artflow/vocabularies/**   tag vocabularies        (config/vocabularies, when present)
#   P/share/artflow/examples/plugins  the example plugin's source and a README for authors
# The layout is fixed, not taken from GNUInstallDirs: the installed binary
# finds its data as <exe dir>/../share/artflow (core/datadir.h), so bin/ and
# share/artflow/ must stay siblings.  Nothing here is absolute, so P may be
# moved after installing.

install(TARGETS artflow RUNTIME DESTINATION bin)

file(GLOB AF_SDK_HEADERS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/include/artflow/*.h)
install(FILES ${AF_SDK_HEADERS} DESTINATION include/artflow)

# The stage ABI version is recorded in the .pc for build scripts that want to
# check it; read from the header so it is never written twice.
file(STRINGS ${CMAKE_SOURCE_DIR}/include/artflow/stage.h AF_STAGE_ABI_LINE
     REGEX "^#define AF_STAGE_ABI_VERSION ")
if(AF_STAGE_ABI_LINE MATCHES "^#define AF_STAGE_ABI_VERSION ([0-9]+)")
  set(AF_STAGE_ABI ${CMAKE_MATCH_1})
else()
  message(WARNING "include/artflow/stage.h: cannot read AF_STAGE_ABI_VERSION for artflow.pc")
  set(AF_STAGE_ABI "")
endif()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/include/artflow/stage.h)
configure_file(${CMAKE_SOURCE_DIR}/cmake/artflow.pc.in ${CMAKE_BINARY_DIR}/artflow.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/artflow.pc DESTINATION lib/pkgconfig)

install(DIRECTORY ${CMAKE_SOURCE_DIR}/config/profiles/ DESTINATION share/artflow/profiles
        FILES_MATCHING PATTERN "*.yaml")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/config/models/ DESTINATION share/artflow/models
        FILES_MATCHING PATTERN "*.yaml")
# OPTIONAL: the folder does not exist yet; once it does, it is installed
# without an edit here
install(DIRECTORY ${CMAKE_SOURCE_DIR}/config/vocabularies/ DESTINATION share/artflow/vocabularies OPTIONAL)
install(FILES ${CMAKE_SOURCE_DIR}/examples/plugins/dhash.c ${CMAKE_SOURCE_DIR}/examples/plugins/dhash.yaml
              ${CMAKE_SOURCE_DIR}/examples/plugins/README.md
        DESTINATION share/artflow/examples/plugins)
