# ctest's server.npm_install: installs tests/server/package-lock.json into DST/node_modules with
# `npm ci` (the npm registry only; nothing runs at install time). Skips the install when DST
# already holds exactly this lockfile's packages, so that a second run works offline.
#   cmake -DSRC=<tests/server> -DDST=<build>/server-tests -DNPM=<npm> -P npm_ci.cmake
foreach(v SRC DST NPM)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "npm_ci.cmake: -D${v}= is required")
  endif()
endforeach()

file(MAKE_DIRECTORY ${DST})
file(COPY_FILE ${SRC}/package.json ${DST}/package.json ONLY_IF_DIFFERENT)
file(COPY_FILE ${SRC}/package-lock.json ${DST}/package-lock.json ONLY_IF_DIFFERENT)

set(stamp ${DST}/node_modules/.slm-installed-lock.json)
if(EXISTS ${stamp})
  file(SHA256 ${stamp} have)
  file(SHA256 ${SRC}/package-lock.json want)
  if(have STREQUAL want)
    message(STATUS "server tests: node_modules in ${DST} already match package-lock.json")
    return()
  endif()
endif()

execute_process(
  COMMAND ${NPM} ci --no-audit --no-fund --ignore-scripts --prefer-offline
  WORKING_DIRECTORY ${DST}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "npm ci in ${DST} failed (${rc}): the server tests need the npm registry once "
                      "(or a filled npm cache) to install tests/server/package-lock.json")
endif()
file(COPY_FILE ${SRC}/package-lock.json ${stamp})
