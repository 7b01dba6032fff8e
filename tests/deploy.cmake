# tests of deploy/ and docs/ (see tests/CMakeLists.txt for salvo_test())
# The annotated example must pass the check exactly as an operator runs it.
add_test(NAME deploy_example_config_check
  COMMAND salvo config check -c ${PROJECT_SOURCE_DIR}/deploy/salvo.example.toml)
set_tests_properties(deploy_example_config_check PROPERTIES TIMEOUT 30
  FAIL_REGULAR_EXPRESSION "warning|error")
salvo_test(NAME test_deploy_docs SOURCES test_deploy_docs.c LIBS salvo_engine TIMEOUT 60)
# systemd units (systemd-analyze verify), Dockerfile package names (apt-cache),
# compose.yaml (python3-yaml) and the compose demo campaign; 77 = nothing to check with.
add_test(NAME deploy_files_check
  COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/deploy_check.sh ${PROJECT_SOURCE_DIR}
          $<TARGET_FILE:salvo> $<TARGET_FILE:salvo-sink>)
set_tests_properties(deploy_files_check PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
