# Installation layout and the Debian package (CPack DEB).
#
# `cmake --install build` puts the binaries, systemd units, sysusers.d and
# tmpfiles.d entries, an example config, man pages and docs in place; `cpack -G
# DEB` (or the `package` target) builds iamtokend_<version>_<arch>.deb from the
# same rules. iamtoken-sim, the IMDS/IAM emulator, is for development only: it
# is in the separate, excluded-by-default component `sim` and never in the
# .deb (`cmake --install build --component sim` installs it).

# A system daemon packaged for Debian: unless a prefix was chosen explicitly,
# install under /usr (a .deb must not use /usr/local; the package is built
# with this same prefix). The installed unit names the binary by this
# configure-time path: choose the prefix when configuring, not with
# `cmake --install --prefix`.
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX "/usr" CACHE PATH "Install prefix" FORCE)
  include(GNUInstallDirs)
endif()

set(IAMTOK_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
  "systemd system unit directory (relative to the prefix, or absolute)")
set(IAMTOK_SYSUSERSDIR "lib/sysusers.d" CACHE STRING
  "sysusers.d directory (relative to the prefix, or absolute)")
set(IAMTOK_TMPFILESDIR "lib/tmpfiles.d" CACHE STRING
  "tmpfiles.d directory (relative to the prefix, or absolute)")
# /etc whatever the prefix: the daemon's built-in default is /etc/iamtokend/config.json.
set(IAMTOK_CONFDIR "/etc/iamtokend" CACHE PATH "Directory of the daemon's config.json (absolute)")

set(iamtok_component iamtokend)
set(iamtok_docdir "${CMAKE_INSTALL_DATAROOTDIR}/doc/iamtokend")
set(iamtok_gen "${PROJECT_BINARY_DIR}/install")

# Absolute form of a directory given relative to the prefix.
function(iamtok_full_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()
iamtok_full_path(iamtok_full_unitdir "${IAMTOK_SYSTEMD_UNITDIR}")
iamtok_full_path(iamtok_full_sysusersdir "${IAMTOK_SYSUSERSDIR}")
iamtok_full_path(iamtok_full_tmpfilesdir "${IAMTOK_TMPFILESDIR}")

# --- binaries. Docker finds a credential helper as docker-credential-<name>
# on PATH. The simulator is for tests and demos: a component of its own,
# never in the package.
install(TARGETS iamtokend iamtoken-get docker-credential-iamtoken
        RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT ${iamtok_component})
install(TARGETS iamtoken-sim RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
        COMPONENT sim EXCLUDE_FROM_ALL)

# --- systemd integration. The unit in systemd/ names /usr/bin and /etc; the
# installed copy names this build's directories (identical with prefix /usr).
file(READ "${PROJECT_SOURCE_DIR}/systemd/iamtokend.service" iamtok_unit)
string(REPLACE "/usr/bin/iamtokend" "${CMAKE_INSTALL_FULL_BINDIR}/iamtokend"
       iamtok_unit "${iamtok_unit}")
string(REPLACE "/etc/iamtokend/config.json" "${IAMTOK_CONFDIR}/config.json"
       iamtok_unit "${iamtok_unit}")
file(CONFIGURE OUTPUT "${iamtok_gen}/iamtokend.service" CONTENT "${iamtok_unit}" @ONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  "${PROJECT_SOURCE_DIR}/systemd/iamtokend.service")

install(FILES "${iamtok_gen}/iamtokend.service" "${PROJECT_SOURCE_DIR}/systemd/iamtokend.socket"
        DESTINATION "${IAMTOK_SYSTEMD_UNITDIR}" COMPONENT ${iamtok_component})
install(FILES "${PROJECT_SOURCE_DIR}/systemd/sysusers.d/iamtokend.conf"
        DESTINATION "${IAMTOK_SYSUSERSDIR}" COMPONENT ${iamtok_component})
install(FILES "${PROJECT_SOURCE_DIR}/systemd/tmpfiles.d/iamtokend.conf"
        DESTINATION "${IAMTOK_TMPFILESDIR}" COMPONENT ${iamtok_component})
# The placeholder CR-token file IBM SDK programs name as CR_TOKEN_FILENAME
# when AUTH_URL points at the HTTP endpoint: the SDKs insist on reading a
# non-empty file, the endpoint identifies callers by uid and ignores its
# content. No secret, so world-readable.
install(FILES "${PROJECT_SOURCE_DIR}/systemd/sdk-cr-token"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/iamtokend" COMPONENT ${iamtok_component}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# --- example config. examples/config.json becomes config.json, but an
# existing config (an operator's) is never overwritten by `cmake --install`.
# (file(INSTALL) adds DESTDIR itself; the existence check must add it.)
set(iamtok_example_config "${PROJECT_SOURCE_DIR}/examples/config.json")
install(CODE "
    set(dest \"\$ENV{DESTDIR}${IAMTOK_CONFDIR}/config.json\")
    if(EXISTS \"\${dest}\")
      message(STATUS \"Keeping existing: \${dest}\")
    else()
      file(INSTALL \"${iamtok_example_config}\" DESTINATION \"${IAMTOK_CONFDIR}\"
           PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    endif()" COMPONENT ${iamtok_component})
install(FILES "${iamtok_example_config}" DESTINATION "${iamtok_docdir}/examples"
        COMPONENT ${iamtok_component})

# --- man pages, gzipped (gzip -n: reproducible) when gzip is available.
find_program(IAMTOK_GZIP gzip)
file(MAKE_DIRECTORY "${iamtok_gen}/man")
foreach(page iamtoken-get.1 docker-credential-iamtoken.1 iamtokend.json.5 iamtokend.8)
  set(src "${PROJECT_SOURCE_DIR}/docs/man/${page}")
  string(REGEX MATCH "[0-9]$" section "${page}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${src}")
  if(IAMTOK_GZIP)
    execute_process(COMMAND "${IAMTOK_GZIP}" -9nc INPUT_FILE "${src}"
                    OUTPUT_FILE "${iamtok_gen}/man/${page}.gz" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "gzip ${src} failed: ${rc}")
    endif()
    set(src "${iamtok_gen}/man/${page}.gz")
  endif()
  install(FILES "${src}" DESTINATION "${CMAKE_INSTALL_MANDIR}/man${section}"
          COMPONENT ${iamtok_component})
endforeach()

# --- documentation and examples
foreach(doc docs/operations.md docs/protocol.md docs/http.md docs/upstream.md docs/security.md README.md)
  install(FILES "${PROJECT_SOURCE_DIR}/${doc}" DESTINATION "${iamtok_docdir}"
          COMPONENT ${iamtok_component})
endforeach()
foreach(example k8s systemd prometheus)
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/examples/${example}" DESTINATION "${iamtok_docdir}/examples"
          COMPONENT ${iamtok_component})
endforeach()

# --- the layout, for tests/e2e/packaging_test.sh (shell syntax)
set(iamtok_binaries "iamtokend iamtoken-get docker-credential-iamtoken")
file(CONFIGURE OUTPUT "${iamtok_gen}/layout.sh" @ONLY CONTENT [[
prefix='@CMAKE_INSTALL_PREFIX@'
bindir='@CMAKE_INSTALL_FULL_BINDIR@'
mandir='@CMAKE_INSTALL_FULL_MANDIR@'
datadir='@CMAKE_INSTALL_FULL_DATADIR@'
docdir='@CMAKE_INSTALL_PREFIX@/@iamtok_docdir@'
unitdir='@iamtok_full_unitdir@'
sysusersdir='@iamtok_full_sysusersdir@'
tmpfilesdir='@iamtok_full_tmpfilesdir@'
confdir='@IAMTOK_CONFDIR@'
binaries='@iamtok_binaries@'
man_gzipped='@IAMTOK_GZIP@'
]])

# --- Debian package
foreach(script postinst prerm postrm)
  configure_file("${PROJECT_SOURCE_DIR}/cmake/deb/${script}.in" "${iamtok_gen}/deb/${script}"
                 @ONLY FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
                 GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()
set(iamtok_deb_control_extra
  "${iamtok_gen}/deb/postinst" "${iamtok_gen}/deb/prerm" "${iamtok_gen}/deb/postrm")
file(WRITE "${iamtok_gen}/deb/conffiles" "${IAMTOK_CONFDIR}/config.json\n")
list(APPEND iamtok_deb_control_extra "${iamtok_gen}/deb/conffiles")

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "iamtokend")
set(CPACK_PACKAGE_VENDOR "iamtokend")
set(CPACK_PACKAGE_CONTACT "iamtokend maintainers <iamtokend@example.org>")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "IBM Cloud trusted-profile IAM token daemon")
# Install the package where the units say the files are.
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_COMPONENTS_ALL ${iamtok_component})
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_DEBIAN_PACKAGE_NAME "iamtokend")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
# The summary is the control file's first Description line; this is the rest.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "iamtokend obtains the machine's compute-resource token (the VPC instance
identity token from the metadata service, or a pod's projected service-account
token), exchanges it at IBM Cloud IAM for access tokens of the configured
trusted profiles, keeps them fresh, and hands them to local programs over a
Unix socket, authorizing each caller per profile by its uid and groups.
iamtoken-get is the command-line client; docker-credential-iamtoken lets
docker pull from IBM Cloud Container Registry with those tokens.")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${iamtok_deb_control_extra}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_SOURCE_GENERATOR "TGZ")
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build/" "/\\\\.cache/" "\\\\.swp$")
include(CPack)
