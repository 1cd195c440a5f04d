-- dailypot: no transaction
-- Undoes V8__index_aggregates_by_geohash_prefix.sql without blocking the old
-- server's aggregation job meanwhile.
DROP INDEX CONCURRENTLY IF EXISTS sensor_aggregates_5m_geohash_prefix;
