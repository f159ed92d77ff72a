import type pg from 'pg';
import { hashPassword } from './passwords.js';

export interface User {
  id: string;
  email: string;
  createdAt: string;
}

interface UserRow {
  id: string;
  email: string;
  password_hash: string;
  created_at: Date;
}

const toUser = (row: UserRow): User => ({
  id: String(row.id),
  email: row.email,
  createdAt: row.created_at.toISOString(),
});

/** Users in PostgreSQL; emails are unique case-insensitively. */
export class UserRepository {
  constructor(private readonly pool: pg.Pool) {}

  async findForSignIn(email: string): Promise<{ user: User; passwordHash: string } | undefined> {
    const { rows } = await this.pool.query<UserRow>(
      'SELECT id, email, password_hash, created_at FROM users WHERE lower(email) = lower($1)',
      [email],
    );
    const row = rows[0];
    return row ? { user: toUser(row), passwordHash: row.password_hash } : undefined;
  }

  async get(id: string): Promise<User | undefined> {
    const { rows } = await this.pool.query<UserRow>(
      'SELECT id, email, password_hash, created_at FROM users WHERE id = $1',
      [id],
    );
    return rows[0] ? toUser(rows[0]) : undefined;
  }

  /**
   * Create the user unless one with this email exists: safe for every worker and replica to call at
   * once (the unique index decides). Returns whether this call created it.
   */
  async createIfMissing(email: string, password: string): Promise<boolean> {
    if (await this.findForSignIn(email)) return false;
    const { rowCount } = await this.pool.query(
      'INSERT INTO users (email, password_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING',
      [email, await hashPassword(password)],
    );
    return rowCount === 1;
  }
}
