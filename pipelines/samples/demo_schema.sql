-- Doris DDL of the demo's tables: paste your own tables' DDL in the same form.
CREATE DATABASE IF NOT EXISTS demo;

CREATE TABLE IF NOT EXISTS demo.events (
  event_id BIGINT NOT NULL COMMENT "unique event id",
  user_id BIGINT NULL,
  event_type VARCHAR(32) NOT NULL DEFAULT "unknown",
  amount DECIMAL(12, 2) NULL,
  ts DATETIME NULL,
  payload STRING NULL
) ENGINE=OLAP
DUPLICATE KEY(event_id)
DISTRIBUTED BY HASH(event_id) BUCKETS 8
PROPERTIES ("replication_num" = "1");

CREATE TABLE IF NOT EXISTS demo.users (
  id BIGINT NOT NULL,
  name VARCHAR(64) NULL,
  email VARCHAR(128) NULL,
  age INT NULL,
  updated_at DATETIME NULL
) ENGINE=OLAP
UNIQUE KEY(id)
DISTRIBUTED BY HASH(id) BUCKETS 4
PROPERTIES ("replication_num" = "1", "enable_unique_key_merge_on_write" = "true");

CREATE TABLE IF NOT EXISTS demo.orders (
  order_id BIGINT NOT NULL,
  user_id BIGINT NOT NULL,
  status VARCHAR(16) NULL,
  total DECIMAL(14, 2) NULL,
  seq BIGINT NULL
) ENGINE=OLAP
UNIQUE KEY(order_id)
DISTRIBUTED BY HASH(order_id) BUCKETS 4
PROPERTIES ("replication_num" = "1", "function_column.sequence_col" = "seq");

CREATE TABLE IF NOT EXISTS demo.page_views (
  page VARCHAR(128) NOT NULL,
  day DATE NOT NULL,
  views BIGINT SUM DEFAULT "0",
  last_seen DATETIME REPLACE NULL
) ENGINE=OLAP
AGGREGATE KEY(page, day)
DISTRIBUTED BY HASH(page) BUCKETS 4
PROPERTIES ("replication_num" = "1");
