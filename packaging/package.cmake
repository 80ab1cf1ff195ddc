# The Debian package (CPack DEB): what `cmake --install` puts where, and the package around
# it. Build it with the install prefix the package uses:
#   cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr && cmake --build build-deb --target package
include(GNUInstallDirs)

set(SP_SYSTEMD_UNIT_DIR /lib/systemd/system CACHE PATH "where the systemd unit is installed")
install(FILES ${CMAKE_SOURCE_DIR}/packaging/proxy.lua DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/smartproxy)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/smartproxy.service DESTINATION ${SP_SYSTEMD_UNIT_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/packaging/sysusers.conf DESTINATION lib/sysusers.d
        RENAME smartproxy.conf)
install(FILES ${CMAKE_SOURCE_DIR}/docs/man/smartproxy.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${CMAKE_SOURCE_DIR}/docs/man/smartproxy.lua.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME smartproxy)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "smartproxy maintainers <smartproxy@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "programmable reverse proxy for TCP, TLS and HTTP, configured in Lua")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd | systemd-standalone-sysusers | systemd-sysusers, passwd")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "nftables")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/packaging/debian/conffiles;${CMAKE_SOURCE_DIR}/packaging/debian/postinst;${CMAKE_SOURCE_DIR}/packaging/debian/prerm;${CMAKE_SOURCE_DIR}/packaging/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
