# Install rules and Debian packages (CPack): edgefleet-server and edgefleet-agent, each with its
# systemd unit, a default configuration and maintainer scripts that create its system user and
# start the unit; edgefleetctl (the operator CLI and edgefleet-delta), for both ends.
#   cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build && cpack --config build/CPackConfig.cmake -B OUT
include(GNUInstallDirs)

set(EDGEFLEET_DEB_DIR ${PROJECT_SOURCE_DIR}/deploy/debian)
set(EDGEFLEET_UNIT_DIR lib/systemd/system)

# edgefleet_package(COMPONENT USER HOME CONFIG): the component's systemd unit, its default
# configuration (deploy/debian/COMPONENT/CONFIG to /etc/edgefleet/CONFIG and .../default to
# /etc/default/COMPONENT, both conffiles) and maintainer scripts that create USER (home HOME).
function(edgefleet_package component user home config)
  set(PACKAGE ${component})
  set(USER ${user})
  set(HOME ${home})
  set(UNIT ${component}.service)
  install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/${UNIT} DESTINATION ${EDGEFLEET_UNIT_DIR}
          COMPONENT ${component})
  install(FILES ${EDGEFLEET_DEB_DIR}/${component}/${config} DESTINATION /etc/edgefleet COMPONENT ${component})
  install(FILES ${EDGEFLEET_DEB_DIR}/${component}/default DESTINATION /etc/default
          RENAME ${component} COMPONENT ${component})
  set(scripts_dir ${CMAKE_BINARY_DIR}/debian/${component})
  foreach(script postinst prerm postrm)
    configure_file(${EDGEFLEET_DEB_DIR}/${script}.in ${scripts_dir}/${script} @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                    WORLD_READ WORLD_EXECUTE)
  endforeach()
  file(WRITE ${scripts_dir}/conffiles
       "/etc/edgefleet/${config}\n/etc/default/${component}\n")
  string(TOUPPER ${component} upper)
  set(CPACK_DEBIAN_${upper}_PACKAGE_CONTROL_EXTRA
      ${scripts_dir}/postinst ${scripts_dir}/prerm ${scripts_dir}/postrm ${scripts_dir}/conffiles
      PARENT_SCOPE)
endfunction()

install(TARGETS edgefleet-server RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT edgefleet-server)
install(TARGETS edgefleetctl edgefleet-delta RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT edgefleetctl)
install(TARGETS edgefleet-agent RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT edgefleet-agent)
edgefleet_package(edgefleet-server edgefleet /var/lib/edgefleet server.json)
edgefleet_package(edgefleet-agent edgefleet-agent /var/lib/edgefleet-agent agent.json)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME edgefleet)
set(CPACK_PACKAGE_VENDOR "edgefleet")
set(CPACK_PACKAGE_CONTACT "edgefleet maintainers <maintainers@edgefleet.invalid>")
set(CPACK_COMPONENTS_ALL edgefleet-server edgefleet-agent edgefleetctl)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # NAME_VERSION-REVISION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(EDGEFLEET_DEB_VERSION ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/edgefleet/edgefleet")
# Runtime libraries from the binaries' own links (dpkg-shlibdeps), plus what the scripts use.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_EDGEFLEET-SERVER_PACKAGE_DEPENDS "passwd, init-system-helpers")
set(CPACK_DEBIAN_EDGEFLEET-AGENT_PACKAGE_DEPENDS "passwd, init-system-helpers")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_EDGEFLEET-SERVER_PACKAGE_NAME edgefleet-server)
set(CPACK_DEBIAN_EDGEFLEET-AGENT_PACKAGE_NAME edgefleet-agent)
set(CPACK_DEBIAN_EDGEFLEETCTL_PACKAGE_NAME edgefleetctl)
# The first line is the package's summary, the rest its long description.
set(CPACK_DEBIAN_EDGEFLEET-SERVER_DESCRIPTION
    "edgefleet fleet server: ML model delivery to edge devices
The control plane of edgefleet: device registry and certificate authority, model
registry with signed releases, differential updates, staged rollouts gated on
field telemetry, admin gRPC/REST APIs and Prometheus metrics. Needs a
PostgreSQL 15 database; edgefleetctl is its command-line client.")
set(CPACK_DEBIAN_EDGEFLEET-AGENT_DESCRIPTION
    "edgefleet device agent: on-device ML model updates and serving
Enrolls the device with an edgefleet server over mutual TLS, installs and
verifies signed model releases (full or differential), hot-swaps the ONNX model
it serves to local applications on a Unix socket and reports field telemetry.")
set(CPACK_DEBIAN_EDGEFLEETCTL_DESCRIPTION
    "edgefleet command-line tools
edgefleetctl drives an edgefleet server's admin API (devices, tokens, models,
rollouts, telemetry) and a local agent's inference socket; edgefleet-delta makes
and applies model-aware binary patches.")
set(CPACK_DEBIAN_EDGEFLEET-SERVER_PACKAGE_RECOMMENDS "edgefleetctl (= ${EDGEFLEET_DEB_VERSION}), postgresql-15")
set(CPACK_DEBIAN_EDGEFLEET-AGENT_PACKAGE_SUGGESTS "edgefleetctl (= ${EDGEFLEET_DEB_VERSION})")
include(CPack)
