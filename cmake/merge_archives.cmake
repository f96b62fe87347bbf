# cmake -DAR=<ar> -DMRI=<script> -P merge_archives.cmake: runs `ar -M` on an MRI script (used by
# install.cmake to merge the static libraries into libmetatape.a).
execute_process(COMMAND ${AR} -M INPUT_FILE ${MRI} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "merging static libraries with ${AR} -M ${MRI} failed: ${err}")
endif()
