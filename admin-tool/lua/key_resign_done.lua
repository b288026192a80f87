-- key resign, at the end of a run: one audit entry for the whole run.
--   ARGV[4] team ('*' for all), ARGV[5] what was re-signed
audit('key.resign', ARGV[5], ARGV[4])
return 1
