//! PostgreSQL adapter plugin
